//! 2 MiB (PMD) mappings: a write fault into a 2 MiB hole of a file that is
//! large enough allocates a whole aligned extent and maps it with one PMD;
//! its dirty state is one entry, flushed by fsync as a whole; a hole punch
//! or truncate inside it hands the dirty state of the pages that stay to
//! 4 KiB entries. Counters: pmd_faults, pmd_entries_marked,
//! pmd_entries_flushed, pmd_entries_removed (ferrofs only; these cases need
//! them).

use crate::gup::stat_value;
use crate::pattern;
use crate::runner::{CaseError, CaseResult, Ctx};
use crate::sys::{Fd, Map, PAGE};

const MIB2: usize = 2 << 20;

fn need_counters(ctx: &Ctx) -> Result<(), CaseError> {
    if ctx.stats_dir().is_none() || stat_value(ctx, "pmd_faults").is_none() {
        return Err(CaseError::Skip(
            "needs the ferrofs PMD counters (--stats)".into(),
        ));
    }
    Ok(())
}

/// The named counters, in order.
fn snap(ctx: &Ctx, names: &[&str]) -> Vec<i128> {
    names
        .iter()
        .map(|n| stat_value(ctx, n).unwrap_or(0) as i128)
        .collect()
}

const NAMES: [&str; 7] = [
    "pmd_faults",
    "pmd_entries_marked",
    "pmd_entries_flushed",
    "pmd_entries_removed",
    "write_faults",
    "entries_marked",
    "entries_flushed",
];

fn delta(ctx: &mut Ctx, what: &str, before: &[i128], after: &[i128], want: [i128; 7]) {
    for k in 0..NAMES.len() {
        if want[k] >= 0 {
            ctx.check_eq(
                &format!("{what}: {}", NAMES[k]),
                want[k],
                after[k] - before[k],
            );
        }
    }
}

fn fill_pattern(map: &Map, seed: u64, len: usize) {
    let mut buf = vec![0u8; len];
    pattern::fill(seed, 0, &mut buf);
    map.copy_in(0, &buf);
}

fn check_pattern(
    ctx: &mut Ctx,
    what: &str,
    fd: &Fd,
    seed: u64,
    len: usize,
    zero: &[(usize, usize)],
) -> Result<(), String> {
    let mut back = vec![0u8; len];
    fd.pread_exact(&mut back, 0)?;
    let mut want = vec![0u8; len];
    pattern::fill(seed, 0, &mut want);
    for &(a, n) in zero {
        want[a..a + n].fill(0);
    }
    if let Some(at) = (0..len).find(|&i| back[i] != want[i]) {
        ctx.fail(&format!(
            "{what}: offset {at}: expected {:#04x}, got {:#04x}",
            want[at], back[at]
        ));
    }
    Ok(())
}

pub fn pmd_write_faults_map_2mib_and_fsync_flushes_each_once(ctx: &mut Ctx) -> CaseResult {
    need_counters(ctx)?;
    let len = 4 * MIB2;
    let fd = Fd::create(&ctx.file(""))?;
    fd.ftruncate(len as u64)?;
    let map = Map::shared_rw(&fd, len)?;
    ctx.check(map.addr() % MIB2 == 0, || {
        format!(
            "a 8 MiB mapping at {:#x}: not 2 MiB aligned (get_unmapped_area)",
            map.addr()
        )
    });
    let s0 = snap(ctx, &NAMES);
    // One store per 2 MiB region: one PMD fault each, no 4 KiB fault.
    for r in 0..4 {
        map.write(r * MIB2 + 100, 0x40 + r as u8);
    }
    let s1 = snap(ctx, &NAMES);
    delta(
        ctx,
        "one store in each of 4 holes of 2 MiB",
        &s0,
        &s1,
        [4, 4, 0, 0, 0, 0, 0],
    );
    // Stores anywhere else in those 2 MiB: no fault at all.
    for p in (0..len).step_by(PAGE) {
        map.write(p + 7, 1);
    }
    let s2 = snap(ctx, &NAMES);
    delta(
        ctx,
        "stores to every page after that",
        &s1,
        &s2,
        [0, 0, 0, 0, 0, 0, 0],
    );
    fd.fsync()?;
    let s3 = snap(ctx, &NAMES);
    delta(ctx, "fsync", &s2, &s3, [0, 0, 4, 0, -1, 0, 0]);
    fd.fsync()?;
    let s4 = snap(ctx, &NAMES);
    delta(ctx, "second fsync", &s3, &s4, [0, 0, 0, 0, 0, 0, 0]);
    // A store after the fsync faults the PMD in again and is flushed.
    map.write(MIB2 + 5 * PAGE, 0x99);
    fd.fsync()?;
    let s5 = snap(ctx, &NAMES);
    delta(
        ctx,
        "store after fsync, fsync",
        &s4,
        &s5,
        [1, 1, 1, 0, 0, 0, 0],
    );
    // The extents are whole, aligned 2 MiB runs of the device.
    let ext = fd
        .fiemap(0, len as u64)
        .map_err(|e| format!("FIEMAP: {e}"))?;
    let covered: u64 = ext.iter().map(|e| e.len).sum();
    ctx.check_eq("bytes FIEMAP covers", len as u64, covered);
    for e in &ext {
        ctx.check(
            e.physical % MIB2 as u64 == 0 && e.len % MIB2 as u64 == 0,
            || format!("extent {e:?} is not whole aligned 2 MiB runs"),
        );
    }
    let mut b = [0u8; 1];
    fd.pread_exact(&mut b, (MIB2 + 5 * PAGE) as u64)?;
    ctx.check_eq("byte stored through the PMD, read back", 0x99, b[0]);
    Ok(())
}

pub fn punch_inside_a_pmd_keeps_the_rest_dirty(ctx: &mut Ctx) -> CaseResult {
    need_counters(ctx)?;
    let len = 2 * MIB2;
    let fd = Fd::create(&ctx.file(""))?;
    fd.ftruncate(len as u64)?;
    let map = Map::shared_rw(&fd, len)?;
    let seed = 0x9d11;
    let s0 = snap(ctx, &NAMES);
    fill_pattern(&map, seed, len);
    let s1 = snap(ctx, &NAMES);
    delta(
        ctx,
        "filling 4 MiB through the mapping",
        &s0,
        &s1,
        [2, 2, 0, 0, 0, 0, 0],
    );
    // Punch 3 pages in the middle of the first extent.
    let hole = (100 * PAGE, 3 * PAGE);
    fd.fallocate(
        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        hole.0 as u64,
        hole.1 as u64,
    )
    .map_err(|e| format!("punch: {e}"))?;
    let s2 = snap(ctx, &NAMES);
    // The first extent's entry goes; its 509 other pages keep their dirty
    // state as 4 KiB entries.
    delta(
        ctx,
        "punch of 3 pages inside a dirty PMD",
        &s1,
        &s2,
        [0, 0, 0, 1, 0, 509, 0],
    );
    fd.fsync()?;
    let s3 = snap(ctx, &NAMES);
    delta(
        ctx,
        "fsync after the punch",
        &s2,
        &s3,
        [0, 0, 1, 0, 0, 0, 509],
    );
    check_pattern(ctx, "after the punch", &fd, seed, len, &[hole])?;
    // The mapping sees the hole too (its PMD was dropped by the punch).
    let mut v = [0u8; 8];
    map.copy_out(hole.0, &mut v);
    ctx.check(v == [0; 8], || {
        format!("mapping over the punched page reads {v:?}")
    });
    // Truncate into the second extent: the pages below the cut stay.
    let cut = MIB2 + 10 * PAGE;
    map.write(MIB2 + 3, 0x77); // dirty the second PMD again
    drop(map);
    let s4 = snap(ctx, &NAMES);
    fd.ftruncate(cut as u64)?;
    let s5 = snap(ctx, &NAMES);
    delta(
        ctx,
        "truncate into a dirty PMD",
        &s4,
        &s5,
        [0, 0, 0, 1, 0, 10, -1],
    );
    fd.fsync()?;
    let mut back = vec![0u8; 16];
    fd.pread_exact(&mut back, MIB2 as u64)?;
    let mut want = vec![0u8; 16];
    pattern::fill(seed, MIB2 as u64, &mut want);
    want[3] = 0x77;
    ctx.check(back == want, || {
        format!("second extent's first bytes after truncate: {back:?}")
    });
    ctx.check_eq("size after truncate", cut as u64, fd.size()?);
    Ok(())
}

/// A mapping of `len` bytes of `fd` from file offset `off` at a virtual
/// address that is `skew` bytes past a 2 MiB boundary (inside a private
/// reservation of our own).
fn map_skewed(fd: &Fd, len: usize, off: u64, skew: usize) -> Result<(usize, usize, usize), String> {
    let res_len = len + 2 * MIB2;
    // SAFETY: a fresh anonymous reservation chosen by the kernel.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            res_len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(format!("mmap reservation: {}", crate::sys::last_err()));
    }
    let want = (base as usize).next_multiple_of(MIB2) + skew;
    // SAFETY: `want..want+len` lies inside our own reservation: MAP_FIXED
    // replaces only memory reserved just above.
    let p = unsafe {
        libc::mmap(
            want as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_FIXED,
            fd.raw(),
            off as i64,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(format!("mmap fixed: {}", crate::sys::last_err()));
    }
    Ok((p as usize, base as usize, res_len))
}

/// The core does not check, for DAX VMAs, that a PMD fits the fault
/// (`__thp_vma_allowable_orders` returns early): ferrofs must. A file of
/// whole 2 MiB extents, mapped 4 KiB off 2 MiB alignment, from file offset
/// 4 KiB, and as a 1 MiB VMA: every page must show its own bytes, and no
/// PMD may be used (before the check, such faults mapped the extent at the
/// aligned address: every page showed its neighbour's bytes).
pub fn skewed_and_small_mappings_of_pmd_extents_map_each_page(ctx: &mut Ctx) -> CaseResult {
    need_counters(ctx)?;
    let len = 2 * MIB2;
    let fd = Fd::create(&ctx.file(""))?;
    let seed = 0x5e3d;
    let mut buf = vec![0u8; len];
    pattern::fill(seed, 0, &mut buf);
    // One write of 4 MiB: whole extents.
    fd.pwrite_all(&buf, 0)?;
    fd.fsync()?;
    let cases: [(&str, usize, u64, usize); 3] = [
        ("mapping 4 KiB past a 2 MiB boundary", len, 0, PAGE),
        (
            "mapping from file offset 4 KiB at a 2 MiB boundary",
            len - PAGE,
            PAGE as u64,
            0,
        ),
        ("1 MiB mapping at a 2 MiB boundary", MIB2 / 2, 0, 0),
    ];
    for (what, mlen, off, skew) in cases {
        let p0 = stat_value(ctx, "pmd_faults").unwrap_or(0);
        let (addr, base, res_len) = map_skewed(&fd, mlen, off, skew)?;
        let mut bad = None;
        for pg in 0..mlen / PAGE {
            let at = pg * PAGE + 8;
            // SAFETY: inside the live mapping; a raw volatile load.
            let got = unsafe { ((addr + at) as *const u8).read_volatile() };
            let want = buf[off as usize + at];
            if got != want && bad.is_none() {
                bad = Some((pg, want, got));
            }
        }
        // A store through it lands at its own file offset.
        // SAFETY: inside the live writable mapping.
        unsafe { ((addr + PAGE + 3) as *mut u8).write_volatile(0xa7) };
        // SAFETY: our reservation, with the file mapping inside it.
        unsafe { libc::munmap(base as *mut libc::c_void, res_len) };
        let mut b = [0u8; 1];
        fd.pread_exact(&mut b, off + PAGE as u64 + 3)?;
        buf[off as usize + PAGE + 3] = 0xa7;
        if let Some((pg, w, g)) = bad {
            ctx.fail(&format!(
                "{what}: page {pg} reads {g:#04x}, its file bytes are {w:#04x}"
            ));
        }
        ctx.check_eq(
            &format!("{what}: stored byte at its file offset"),
            0xa7,
            b[0],
        );
        let p1 = stat_value(ctx, "pmd_faults").unwrap_or(0);
        ctx.check_eq(&format!("{what}: PMD faults"), 0, p1 as i128 - p0 as i128);
    }
    Ok(())
}

/// The state letter of thread `tid` of this process (`S`: asleep).
fn thread_state(tid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    let i = stat.rfind(')')?;
    stat[i + 1..].trim_start().chars().next()
}

/// A shared futex is keyed on the file and the page's offset in it (the
/// page's `index`, which the fault sets). Every page of a PMD-mapped extent
/// must carry its own offset: a thread waits on a word of page 5 of the
/// extent, and FUTEX_WAKE of the word at the same place in page 9 must find
/// nobody (a wrong index gives both pages one key, and the wake is stolen),
/// while FUTEX_WAKE of page 5's word wakes the thread.
pub fn futexes_in_pages_of_a_pmd_mapping_have_their_own_keys(ctx: &mut Ctx) -> CaseResult {
    use crate::gup::{err_text, futex, load_u32};
    use std::sync::atomic::{AtomicI32, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    need_counters(ctx)?;
    let len = 2 * MIB2;
    let fd = Fd::create(&ctx.file(""))?;
    fd.ftruncate(len as u64)?;
    let map = Map::shared_rw(&fd, len)?;
    if map.addr() % MIB2 != 0 {
        return Err(CaseError::Fail(format!(
            "a 4 MiB mapping at {:#x}: not 2 MiB aligned (get_unmapped_area)",
            map.addr()
        )));
    }
    let s0 = snap(ctx, &NAMES);
    // The first store (page 0) maps the whole extent with one PMD.
    map.write(0, 1);
    let s1 = snap(ctx, &NAMES);
    if s1[0] - s0[0] != 1 {
        return Err(CaseError::Fail(format!(
            "a store into a 2 MiB hole: {} PMD faults, expected 1",
            s1[0] - s0[0]
        )));
    }
    let (wait_page, wake_page, inpage) = (5usize, 9usize, 64usize);
    let wait_addr = map.addr() + wait_page * PAGE + inpage;
    let other_addr = map.addr() + wake_page * PAGE + inpage;
    let tid = Arc::new(AtomicI32::new(0));
    let t2 = tid.clone();
    let waiter = std::thread::spawn(move || -> Result<i64, i32> {
        // SAFETY: gettid has no preconditions.
        t2.store(unsafe { libc::gettid() }, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(20);
        // The word is 0 (a hole); wait while it is.
        loop {
            if load_u32(wait_addr) != 0 {
                return Ok(0);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match futex(wait_addr, libc::FUTEX_WAIT, 0, Some(left)) {
                Ok(_) | Err(libc::EAGAIN) | Err(libc::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    });
    // Wait until the thread sleeps (in FUTEX_WAIT: nothing else sleeps).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = tid.load(Ordering::SeqCst);
        if t != 0 && thread_state(t) == Some('S') {
            break;
        }
        if Instant::now() > deadline {
            return Err(CaseError::Fail(
                "the waiting thread did not fall asleep in 10 s".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    match futex(other_addr, libc::FUTEX_WAKE, 1, None) {
        Ok(0) => {}
        Ok(n) => ctx.fail(&format!(
            "FUTEX_WAKE of the word at page {wake_page} (+{inpage}) of a PMD-mapped extent woke {n} \
             waiter(s), expected 0: the only waiter sleeps on page {wait_page}, so the two pages \
             share a futex key (page index)"
        )),
        Err(e) => ctx.fail(&format!("FUTEX_WAKE of page {wake_page}: {}", err_text(e))),
    }
    // Wake the waiter for real: store, then wake its own word.
    map.write(wait_page * PAGE + inpage, 1);
    let mut woke = Ok(0);
    for _ in 0..200 {
        woke = futex(wait_addr, libc::FUTEX_WAKE, 1, None);
        if waiter.is_finished() || matches!(woke, Ok(1)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    match waiter.join() {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => ctx.fail(&format!("the waiter's FUTEX_WAIT: {}", err_text(e))),
        Err(_) => ctx.fail("the waiting thread panicked"),
    }
    if let Err(e) = woke {
        ctx.fail(&format!("FUTEX_WAKE of page {wait_page}: {}", err_text(e)));
    }
    Ok(())
}

/// Of the aligned 2 MiB ranges of `0..len`, those that FIEMAP shows inside
/// one extent at a 2 MiB-aligned device offset (what a PMD needs).
fn pmd_ranges(fd: &Fd, len: u64) -> Result<Vec<bool>, String> {
    let ext = fd.fiemap(0, len).map_err(|e| format!("FIEMAP: {e}"))?;
    let m = MIB2 as u64;
    Ok((0..len / m)
        .map(|r| {
            let (a, b) = (r * m, (r + 1) * m);
            ext.iter().any(|e| {
                e.logical <= a && e.logical + e.len >= b && (e.physical + (a - e.logical)) % m == 0
            })
        })
        .collect())
}

/// A file written in order from offset 0 with large writes (cp, dd, a
/// database's first fill) lies in order: its first 2 MiB, too, are one
/// aligned extent, mapped with one PMD. Written with 1 MiB and with 256 KiB
/// writes, from each of the first two CPUs (each allocates from its own
/// allocator shard: on a fresh shard with no metadata in it, the file's own
/// indirect block once went into the file's reserved first group); the
/// bytes read back through the mapping.
pub fn sequential_writes_from_offset_0_make_every_2mib_one_extent(ctx: &mut Ctx) -> CaseResult {
    need_counters(ctx)?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut r = Ok(());
    for cpu in 0..cpus.min(2) {
        crate::sys::pin_to_cpu(Some(cpu))?;
        r = sequential_writes_on(ctx, cpu);
        if r.is_err() {
            break;
        }
    }
    crate::sys::pin_to_cpu(None)?;
    r
}

fn sequential_writes_on(ctx: &mut Ctx, cpu: usize) -> CaseResult {
    let len = 3 * MIB2;
    for (k, chunk) in [1usize << 20, 256 << 10].into_iter().enumerate() {
        let fd = Fd::create(&ctx.file(&format!("seq{cpu}.{k}")))?;
        let mut buf = vec![0u8; len];
        pattern::fill(70 + k as u64, 0, &mut buf);
        for off in (0..len).step_by(chunk) {
            fd.pwrite_all(&buf[off..off + chunk], off as u64)?;
        }
        fd.fsync()?;
        let whole = pmd_ranges(&fd, len as u64)?;
        ctx.check(whole.iter().all(|&w| w), || {
            format!(
                "a {} MiB file written with {} KiB writes from offset 0 on CPU {cpu}: 2 MiB ranges \
                 that are one aligned extent (FIEMAP): {whole:?}, expected all",
                len >> 20,
                chunk >> 10
            )
        });
        let map = Map::shared_ro(&fd, len)?;
        if map.addr() % MIB2 != 0 {
            return Err(CaseError::Fail(format!(
                "a 6 MiB mapping at {:#x}: not 2 MiB aligned",
                map.addr()
            )));
        }
        let s0 = snap(ctx, &NAMES);
        let mut diff = None;
        for r in 0..len / MIB2 {
            for p in (r * MIB2..(r + 1) * MIB2).step_by(PAGE) {
                if diff.is_none() && map.read(p + 11) != buf[p + 11] {
                    diff = Some(p + 11);
                }
            }
        }
        let s1 = snap(ctx, &NAMES);
        ctx.check_eq(
            &format!(
                "PMD faults reading every page of the file ({} KiB writes, CPU {cpu})",
                chunk >> 10
            ),
            (len / MIB2) as i128,
            s1[0] - s0[0],
        );
        if let Some(at) = diff {
            ctx.fail(&format!(
                "offset {at}: the mapping reads {:#04x}, written {:#04x}",
                map.read(at),
                buf[at]
            ));
        }
    }
    Ok(())
}

/// Read faults map whole extents with PMDs (and remember them); a hole
/// punched inside one and filled again by write(2), and a truncate through
/// another followed by new data, must be seen by the next mappings: the
/// page reads the new bytes, not the freed block, and no PMD maps a range
/// that is no longer one extent.
pub fn read_pmds_see_punches_and_truncates_that_follow(ctx: &mut Ctx) -> CaseResult {
    need_counters(ctx)?;
    let len = 2 * MIB2;
    let fd = Fd::create(&ctx.file(""))?;
    let mut buf = vec![0u8; len];
    pattern::fill(90, 0, &mut buf);
    fd.pwrite_all(&buf, 0)?;
    fd.fsync()?;
    let read_all = |ctx: &mut Ctx, what: &str, want: &[u8]| -> Result<i128, String> {
        let map = Map::shared_ro(&fd, len)?;
        let s0 = snap(ctx, &NAMES);
        let mut bad = None;
        for p in (0..len).step_by(PAGE) {
            for off in [p, p + PAGE - 1] {
                if bad.is_none() && map.read(off) != want[off] {
                    bad = Some(off);
                }
            }
        }
        let s1 = snap(ctx, &NAMES);
        if let Some(at) = bad {
            ctx.fail(&format!(
                "{what}: offset {at}: the mapping reads {:#04x}, expected {:#04x}",
                map.read(at),
                want[at]
            ));
        }
        Ok(s1[0] - s0[0])
    };
    let n = read_all(ctx, "first read", &buf)?;
    ctx.check_eq("PMD faults of the first read", 2, n);
    // Punch page 100 of extent 0 and write it again: a new 4 KiB block.
    let p = 100 * PAGE;
    fd.fallocate(
        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        p as u64,
        PAGE as u64,
    )
    .map_err(|e| format!("punch: {e}"))?;
    let new = vec![0x5au8; PAGE];
    fd.pwrite_all(&new, p as u64)?;
    buf[p..p + PAGE].copy_from_slice(&new);
    // Truncate into extent 1 and grow again with new bytes after the cut.
    let cut = MIB2 + 300 * PAGE;
    fd.ftruncate(cut as u64)?;
    fd.ftruncate(len as u64)?;
    let tail = vec![0xc3u8; len - cut - 8 * PAGE];
    fd.pwrite_all(&tail, (cut + 8 * PAGE) as u64)?;
    buf[cut..cut + 8 * PAGE].fill(0);
    buf[cut + 8 * PAGE..].copy_from_slice(&tail);
    let n = read_all(ctx, "after the punch and the truncate", &buf)?;
    let whole = pmd_ranges(&fd, len as u64)?;
    let want = whole.iter().filter(|&&w| w).count() as i128;
    ctx.check_eq(
        "PMD faults after them (one per range still one extent)",
        want,
        n,
    );
    Ok(())
}

/// The PMD twin of coherence's write_faults_racing_fsync_leave_no_unmarked_
/// writable_pte: a thread stores into each of four 2 MiB extents, round
/// and round, while another fsyncs in a loop, so PMD write faults (mark the
/// extent's entry, then make the PMD writable) race the walk's claim (clear
/// the mark, then zap 2 MiB). After one last fsync, one store per extent
/// must fault and mark each extent again, and the next fsync flush each once.
pub fn pmd_write_faults_racing_fsync_leave_no_unmarked_writable_pmd(ctx: &mut Ctx) -> CaseResult {
    use std::sync::atomic::{AtomicU64, Ordering::*};
    need_counters(ctx)?;
    const N: usize = 4;
    let len = N * MIB2;
    let fd = Fd::create(&ctx.file(""))?;
    fd.ftruncate(len as u64)?;
    let map = Map::shared_rw(&fd, len)?;
    // Allocate the extents (one PMD fault each) before the race.
    for r in 0..N {
        map.write(r * MIB2, 1);
    }
    fd.fsync()?;
    let secs = crate::coherence::secs_env("FERROTEST_COHERENCE_SECS", 6);
    let rounds = 6u32;
    let fsyncs = AtomicU64::new(0);
    let remarks0 = stat_value(ctx, "upgrade_remarks");
    for round in 1..=rounds {
        let base = map.addr();
        let v = crate::coherence::store_while_syncing(
            secs / rounds,
            |v| {
                for r in 0..N {
                    // SAFETY: inside the live shared mapping of `len` bytes,
                    // which outlives the round; a volatile store.
                    unsafe { ((base + r * MIB2 + 8 * r) as *mut u8).write_volatile(v as u8) };
                }
            },
            || {
                fd.fsync()?;
                fsyncs.fetch_add(1, Relaxed);
                Ok(())
            },
        )? as u8;
        fd.fsync()?;
        let s0 = snap(ctx, &NAMES);
        let v2 = v.wrapping_add(1);
        for r in 0..N {
            map.write(r * MIB2 + 8 * r, v2);
        }
        let s1 = snap(ctx, &NAMES);
        fd.fsync()?;
        let s2 = snap(ctx, &NAMES);
        let n = N as i128;
        delta(
            ctx,
            &format!("round {round}: one store per extent after an fsync"),
            &s0,
            &s1,
            [n, n, 0, 0, -1, 0, 0],
        );
        delta(
            ctx,
            &format!("round {round}: the fsync after them"),
            &s1,
            &s2,
            [0, 0, n, 0, 0, 0, 0],
        );
        let mut b = [0u8; 1];
        for r in 0..N {
            fd.pread_exact(&mut b, (r * MIB2 + 8 * r) as u64)?;
            ctx.check_eq(
                &format!("round {round}: last byte stored in extent {r}"),
                v2,
                b[0],
            );
        }
    }
    ctx.diag(&format!("{} fsyncs racing the stores", fsyncs.load(SeqCst)));
    if let (Some(r0), Some(r1)) = (remarks0, stat_value(ctx, "upgrade_remarks")) {
        ctx.diag(&format!(
            "{} faults found their entry claimed before the upgrade",
            r1 - r0
        ));
    }
    Ok(())
}
