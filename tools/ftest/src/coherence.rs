//! Coherence and data-race cases from the outside review (issue 9):
//!
//! - every mapping of a file sees a hole turn into data, whoever fills it
//!   (pwrite, fallocate + pwrite, a store through another process's mapping,
//!   a store through one of the mappings), and so does pread;
//! - a stress of read faults on holes against writers filling them;
//! - a stress of readers (pread and mmap) against writers allocating blocks
//!   (pwrite and write faults), where every word read must belong to the file
//!   and the page it was read from: a torn block pointer would show another
//!   file's tag, a wrong page, or an EIO;
//! - syncfs(2) leaves nothing marked dirty, even for stores made while a
//!   writeback walk was running.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::counters::Field;
use crate::pattern::Rng;
use crate::runner::{CaseError, CaseResult, Ctx};
use crate::sys::{last_err, wait_child, ChildEnd, Fd, Map, PAGE};

const WORDS: usize = PAGE / 8;

/// The tag every 8-byte word of page `page` of file `file` holds, generation
/// `gen` (nonzero, so a tag is never a hole's zero).
fn tag(file: u64, page: u64, gen: u64) -> u64 {
    0xfe00_0000_0000_0000 | (file & 0xff) << 48 | (page & 0xff_ffff) << 24 | (gen & 0xff_ffff)
}

/// (file, page, gen) of a word that looks like a tag.
fn untag(w: u64) -> Option<(u64, u64, u64)> {
    if w >> 56 != 0xfe {
        return None;
    }
    Some(((w >> 48) & 0xff, (w >> 24) & 0xff_ffff, w & 0xff_ffff))
}

fn page_of(file: u64, page: u64, gen: u64) -> Vec<u8> {
    let t = tag(file, page, gen).to_le_bytes();
    let mut v = Vec::with_capacity(PAGE);
    for _ in 0..WORDS {
        v.extend_from_slice(&t);
    }
    v
}

/// Every byte of `w` is 0 or the byte of `want` at its place.
fn partly(w: u64, want: u64) -> bool {
    let (a, b) = (w.to_le_bytes(), want.to_le_bytes());
    (0..8).all(|k| a[k] == 0 || a[k] == b[k])
}

fn word_at(buf: &[u8], i: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[i * 8..i * 8 + 8]);
    u64::from_le_bytes(b)
}

/// One volatile 8-byte load from a mapping (address `base + off`).
fn load_word(base: usize, off: usize) -> u64 {
    // SAFETY: callers pass an 8-byte aligned offset inside a live mapping;
    // a raw volatile load, no Rust reference into memory the kernel changes.
    unsafe { ((base + off) as *const u64).read_volatile() }
}

fn store_word(base: usize, off: usize, v: u64) {
    // SAFETY: as load_word, into a live shared writable mapping.
    unsafe { ((base + off) as *mut u64).write_volatile(v) }
}

pub(crate) fn secs_env(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(default),
    )
}

// ---------------------------------------------------------------------------
// Holes seen through mappings

const HOLE_PAGES: usize = 4;
/// The page that starts as a hole and gets data.
const HP: usize = 1;

/// A sparse file mapped three ways (shared RW, shared RO, private), each of
/// which has read page `HP` (a hole: the zero page).
struct HoleMaps {
    fd: Fd,
    rw: Map,
    ro: Map,
    private: Map,
}

fn hole_maps(ctx: &mut Ctx) -> Result<HoleMaps, CaseError> {
    let fd = Fd::create(&ctx.file(""))?;
    fd.ftruncate((HOLE_PAGES * PAGE) as u64)?;
    let rw = Map::shared_rw(&fd, HOLE_PAGES * PAGE)?;
    let ro = Map::shared_ro(&fd, HOLE_PAGES * PAGE)?;
    let private = Map::private_rw(&fd, HOLE_PAGES * PAGE)?;
    for (what, m) in [
        ("shared RW", &rw),
        ("shared RO", &ro),
        ("private", &private),
    ] {
        let w = load_word(m.addr(), HP * PAGE);
        if w != 0 {
            return Err(CaseError::Fail(format!(
                "{what} mapping of the hole read {w:#x}, expected 0"
            )));
        }
    }
    Ok(HoleMaps {
        fd,
        rw,
        ro,
        private,
    })
}

/// Every mapping, and pread, must show `want` in all of page `HP`.
fn check_all_see(ctx: &mut Ctx, h: &HoleMaps, step: &str, want: &[u8]) -> CaseResult {
    let mut got = vec![0u8; PAGE];
    h.fd.pread_exact(&mut got, (HP * PAGE) as u64)?;
    check_page(ctx, &format!("{step}: pread"), want, &got);
    for (what, m) in [
        ("shared RW", &h.rw),
        ("shared RO", &h.ro),
        ("private (never stored to)", &h.private),
    ] {
        m.copy_out(HP * PAGE, &mut got);
        check_page(ctx, &format!("{step}: {what} mapping"), want, &got);
    }
    Ok(())
}

fn check_page(ctx: &mut Ctx, what: &str, want: &[u8], got: &[u8]) {
    if let Some(i) = (0..want.len()).find(|&i| want[i] != got[i]) {
        let zeros = got.iter().all(|&b| b == 0);
        ctx.fail(&format!(
            "{what}: offset {i} of the page: expected {:#04x}, got {:#04x}{}",
            want[i],
            got[i],
            if zeros {
                " (the whole page reads as zeros: a stale zero-page mapping)"
            } else {
                ""
            }
        ));
    }
}

pub fn hole_mappings_see_pwrite(ctx: &mut Ctx) -> CaseResult {
    let h = hole_maps(ctx)?;
    let data = page_of(1, HP as u64, 1);
    h.fd.pwrite_all(&data, (HP * PAGE) as u64)?;
    check_all_see(ctx, &h, "after pwrite into the hole", &data)
}

pub fn hole_mappings_see_fallocate_then_pwrite(ctx: &mut Ctx) -> CaseResult {
    let h = hole_maps(ctx)?;
    h.fd.fallocate(0, (HP * PAGE) as u64, PAGE as u64)
        .map_err(|e| format!("fallocate: {e}"))?;
    check_all_see(ctx, &h, "after fallocate", &vec![0u8; PAGE])?;
    let data = page_of(1, HP as u64, 2);
    h.fd.pwrite_all(&data, (HP * PAGE) as u64)?;
    check_all_see(ctx, &h, "after fallocate and pwrite", &data)
}

pub fn hole_mappings_see_child_store(ctx: &mut Ctx) -> CaseResult {
    let h = hole_maps(ctx)?;
    let data = page_of(1, HP as u64, 3);
    let path = ctx.file("");
    // SAFETY: fork in a single-threaded case process; the child only maps,
    // stores and exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(CaseError::Fail(format!("fork: {}", last_err())));
    }
    if pid == 0 {
        let code = match Fd::open_rw(&path).and_then(|f| Map::shared_rw(&f, HOLE_PAGES * PAGE)) {
            Ok(m) => {
                m.copy_in(HP * PAGE, &data);
                0
            }
            Err(_) => 3,
        };
        // SAFETY: leave the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let end = wait_child(pid)?;
    if end != ChildEnd::Exited(0) {
        return Err(CaseError::Fail(format!(
            "the child storing through its own mapping {end}"
        )));
    }
    check_all_see(ctx, &h, "after a child's store through its mapping", &data)
}

pub fn hole_mappings_see_own_store(ctx: &mut Ctx) -> CaseResult {
    let h = hole_maps(ctx)?;
    let data = page_of(1, HP as u64, 4);
    h.rw.copy_in(HP * PAGE, &data);
    check_all_see(ctx, &h, "after a store through the RW mapping", &data)
}

// ---------------------------------------------------------------------------
// Stress: read faults on holes against writers filling them

/// The first few failures of a stress's threads (shared with gup.rs).
pub(crate) struct Errors(Mutex<Vec<String>>, AtomicBool);

impl Errors {
    pub(crate) fn new() -> Errors {
        Errors(Mutex::new(Vec::new()), AtomicBool::new(false))
    }
    pub(crate) fn add(&self, e: String) {
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if v.len() < 8 {
            v.push(e);
        }
        self.1.store(true, SeqCst);
    }
    pub(crate) fn any(&self) -> bool {
        self.1.load(SeqCst)
    }
    pub(crate) fn report(&self, ctx: &mut Ctx) {
        for e in self.0.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            ctx.fail(e);
        }
    }
}

const STRESS_PAGES: usize = 128;

/// Several threads read-fault the holes of a sparse file through their own
/// shared mappings while two writers fill its pages (pwrite, or fallocate
/// then pwrite) in random order. A page a writer has finished (published
/// after its pwrite returned) must read as its tag through every mapping
/// from then on; before that, as zeros or its tag.
pub fn hole_fill_race_stress(ctx: &mut Ctx) -> CaseResult {
    let run_for = secs_env("FERROTEST_COHERENCE_SECS", 6);
    let deadline = Instant::now() + run_for;
    let errors = Errors::new();
    let mut rounds = 0u64;
    let mut reads = 0u64;
    while Instant::now() < deadline && !errors.any() {
        rounds += 1;
        let path = ctx.file("");
        let _ = std::fs::remove_file(&path);
        let fd = Fd::create(&path)?;
        fd.ftruncate((STRESS_PAGES * PAGE) as u64)?;
        let maps: Vec<Map> = (0..3)
            .map(|_| Map::shared_ro(&fd, STRESS_PAGES * PAGE))
            .collect::<Result<_, _>>()?;
        let rw = Map::shared_rw(&fd, STRESS_PAGES * PAGE)?;
        let done: Vec<AtomicU64> = (0..STRESS_PAGES).map(|_| AtomicU64::new(0)).collect();
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let order: Vec<usize> = {
            let mut o: Vec<usize> = (0..STRESS_PAGES).collect();
            let mut r = Rng::new(rounds);
            for i in (1..o.len()).rev() {
                o.swap(i, r.below(i + 1));
            }
            o
        };
        let n_reads = AtomicU64::new(0);
        std::thread::scope(|s| {
            let (fd, done, next, stop, errors, order, n_reads) =
                (&fd, &done, &next, &stop, &errors, &order, &n_reads);
            let rw_base = rw.addr();
            for w in 0..2u64 {
                s.spawn(move || loop {
                    let k = next.fetch_add(1, SeqCst);
                    if k >= STRESS_PAGES || errors.any() {
                        break;
                    }
                    let p = order[k];
                    let off = (p * PAGE) as u64;
                    // Writer 0 fallocates first; writer 1 stores through
                    // the RW mapping on every fourth page (a write fault
                    // into a hole that read mappings may show as zeros).
                    if w == 0 {
                        if let Err(e) = fd.fallocate(0, off, PAGE as u64) {
                            errors.add(format!("fallocate page {p}: {e}"));
                            break;
                        }
                    }
                    if w == 1 && p % 4 == 0 {
                        for i in 0..WORDS {
                            store_word(rw_base, p * PAGE + i * 8, tag(1, p as u64, 1));
                        }
                    } else if let Err(e) = fd.pwrite_all(&page_of(1, p as u64, 1), off) {
                        errors.add(format!("pwrite page {p}: {e}"));
                        break;
                    }
                    done[p].store(1, SeqCst);
                });
            }
            for (r, m) in maps.iter().enumerate() {
                let base = m.addr();
                s.spawn(move || {
                    let mut rng = Rng::new(r as u64 + 17);
                    let mut n = 0u64;
                    while !stop.load(SeqCst) && !errors.any() {
                        let p = rng.below(STRESS_PAGES);
                        let finished = done[p].load(SeqCst) != 0;
                        let i = rng.below(WORDS);
                        let w = load_word(base, p * PAGE + i * 8);
                        n += 1;
                        let want = tag(1, p as u64, 1);
                        if w != want && (finished || !partly(w, want)) {
                            errors.add(format!(
                                "mapping {r}, page {p} word {i}: read {w:#x}, expected {want:#x}{}",
                                if finished {
                                    " (the page was written before the load: stale mapping)"
                                } else {
                                    ""
                                }
                            ));
                        }
                    }
                    n_reads.fetch_add(n, SeqCst);
                });
            }
            while next.load(SeqCst) < STRESS_PAGES + 2 && !errors.any() {
                std::thread::sleep(Duration::from_millis(5));
            }
            // Let the readers make one more pass over finished pages.
            std::thread::sleep(Duration::from_millis(50));
            stop.store(true, SeqCst);
        });
        reads += n_reads.load(SeqCst);
        // After the round: every mapping shows every page.
        for (r, m) in maps.iter().enumerate() {
            for p in 0..STRESS_PAGES {
                let w = load_word(m.addr(), p * PAGE + 8 * (p % WORDS));
                if w != tag(1, p as u64, 1) && !errors.any() {
                    errors.add(format!(
                        "after round {rounds}: mapping {r} page {p} reads {w:#x}, expected {:#x}",
                        tag(1, p as u64, 1)
                    ));
                }
            }
        }
    }
    ctx.diag(&format!(
        "{rounds} rounds of {STRESS_PAGES} pages, {reads} mapped reads, {} s",
        run_for.as_secs()
    ));
    errors.report(ctx);
    Ok(())
}

// ---------------------------------------------------------------------------
// Stress: block pointers read while they are published

const A_PAGES: usize = 48; // 12 direct blocks, then the indirect block
const B_PAGES: usize = 1024;
const FILE_A: u64 = 0xa;
const FILE_B: u64 = 0xb;

/// Writers allocate the blocks of file A (pwrite into holes for even pages,
/// write faults through a shared mapping for odd ones), A recreated every
/// round, while readers pread and mmap-read the page being allocated and
/// its neighbours. File B, written once, owns many blocks around A's. Every
/// word read from A must be 0 (not yet written) or A's tag for that page; a
/// page finished before the read began must be A's tag throughout; any read
/// error fails. A torn block pointer would show up as B's tag, another
/// page's tag, or EIO.
pub fn block_pointer_race_stress(ctx: &mut Ctx) -> CaseResult {
    let run_for = secs_env("FERROTEST_COHERENCE_SECS", 6);
    let b = Fd::create(&ctx.file(".b"))?;
    for p in 0..B_PAGES {
        b.pwrite_all(&page_of(FILE_B, p as u64, 1), (p * PAGE) as u64)?;
    }
    let deadline = Instant::now() + run_for;
    let errors = Errors::new();
    let mut rounds = 0u64;
    let reads = AtomicU64::new(0);
    while Instant::now() < deadline && !errors.any() {
        rounds += 1;
        let path = ctx.file("");
        let _ = std::fs::remove_file(&path);
        let a = Fd::create(&path)?;
        a.ftruncate((A_PAGES * PAGE) as u64)?;
        let rw = Map::shared_rw(&a, A_PAGES * PAGE)?;
        let ro = Map::shared_ro(&a, A_PAGES * PAGE)?;
        let done: Vec<AtomicBool> = (0..A_PAGES).map(|_| AtomicBool::new(false)).collect();
        let current = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let gen = rounds;
        std::thread::scope(|s| {
            let (a, done, current, stop, errors, reads) =
                (&a, &done, &current, &stop, &errors, &reads);
            let rw_base = rw.addr();
            let ro_base = ro.addr();
            s.spawn(move || {
                for (p, page_done) in done.iter().enumerate() {
                    if errors.any() {
                        break;
                    }
                    current.store(p, SeqCst);
                    if p % 2 == 0 {
                        let data = page_of(FILE_A, p as u64, gen);
                        if let Err(e) = a.pwrite_all(&data, (p * PAGE) as u64) {
                            errors.add(format!("round {gen}: pwrite page {p}: {e}"));
                            break;
                        }
                    } else {
                        for i in 0..WORDS {
                            store_word(rw_base, p * PAGE + i * 8, tag(FILE_A, p as u64, gen));
                        }
                    }
                    page_done.store(true, SeqCst);
                }
                stop.store(true, SeqCst);
            });
            for r in 0..2usize {
                s.spawn(move || {
                    let mut rng = Rng::new(gen * 7 + r as u64);
                    let mut buf = vec![0u8; PAGE];
                    let mut n = 0u64;
                    while !stop.load(SeqCst) && !errors.any() {
                        let cur = current.load(SeqCst);
                        let p = (cur + rng.below(3)).min(A_PAGES - 1);
                        let finished = done[p].load(SeqCst);
                        let what;
                        if r == 0 {
                            what = "pread";
                            match a.pread(&mut buf, (p * PAGE) as u64) {
                                Ok(PAGE) => {}
                                Ok(k) => {
                                    errors.add(format!("round {gen}: pread page {p}: {k} bytes"));
                                    break;
                                }
                                Err(e) => {
                                    errors.add(format!("round {gen}: pread page {p}: {e}"));
                                    break;
                                }
                            }
                        } else {
                            what = "mapped read";
                            for i in 0..WORDS {
                                buf[i * 8..i * 8 + 8].copy_from_slice(
                                    &load_word(ro_base, p * PAGE + i * 8).to_le_bytes(),
                                );
                            }
                        }
                        n += 1;
                        let want = tag(FILE_A, p as u64, gen);
                        for i in 0..WORDS {
                            let w = word_at(&buf, i);
                            // A page still being written may show a word
                            // half old (zeros), half new: user data is not
                            // copied atomically. Never another value.
                            if w == want || (!finished && partly(w, want)) {
                                continue;
                            }
                            let whose = match untag(w) {
                                Some((FILE_B, bp, _)) => {
                                    format!(" (file B's data, its page {bp}: a block A does not own)")
                                }
                                Some((f, fp, g)) => format!(" (file {f:#x} page {fp} gen {g})"),
                                None if w == 0 => " (zeros after the page was written)".into(),
                                None => String::new(),
                            };
                            errors.add(format!(
                                "round {gen}: {what} of A page {p} word {i}: {w:#x}, expected {want:#x}{whose}"
                            ));
                            break;
                        }
                    }
                    reads.fetch_add(n, SeqCst);
                });
            }
        });
    }
    ctx.diag(&format!(
        "{rounds} rounds of {A_PAGES} allocations, {} reads",
        reads.load(SeqCst)
    ));
    errors.report(ctx);
    // B itself must be intact.
    let mut buf = vec![0u8; PAGE];
    for p in 0..B_PAGES {
        b.pread_exact(&mut buf, (p * PAGE) as u64)?;
        if buf != page_of(FILE_B, p as u64, 1) {
            ctx.fail(&format!("file B page {p} changed"));
            break;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// sync(2) / syncfs(2)

/// Few pages: the storer re-faults a page as soon as a walk zaps it, while
/// that walk (and the flusher's writepages) is still running. That is the
/// window in which the flusher, clearing the inode's dirty state after
/// writepages returns, forgot the new marks.
const SYNC_PAGES: usize = 2;

fn syncfs(fd: &Fd) -> Result<(), String> {
    // SAFETY: plain syscall on our descriptor.
    if unsafe { libc::syncfs(fd.raw()) } != 0 {
        return Err(format!("syncfs: {}", last_err()));
    }
    Ok(())
}

/// A thread stores to the pages of a mapping, round and round, while
/// another calls syncfs in a loop; the stores stop (usually in the middle
/// of a syncfs), then the syncfs loop, then one last syncfs runs. After it
/// nothing may be left dirty: an fsync must find nothing to flush, and each
/// page's last value must read back.
pub fn syncfs_flushes_stores_made_during_writeback(ctx: &mut Ctx) -> CaseResult {
    let fd = Fd::create(&ctx.file(""))?;
    fd.ftruncate((SYNC_PAGES * PAGE) as u64)?;
    let map = Map::shared_rw(&fd, SYNC_PAGES * PAGE)?;
    let base = map.addr();
    let mut total_left = 0i128;
    let syncs = AtomicU64::new(0);
    for round in 1..=6u64 {
        let stop_stores = AtomicBool::new(false);
        let stop_syncs = AtomicBool::new(false);
        let (stored, synced) = std::thread::scope(|s| {
            let (stop_stores, stop_syncs, fd, syncs) = (&stop_stores, &stop_syncs, &fd, &syncs);
            let storer = s.spawn(move || {
                let mut v = 0u64;
                while !stop_stores.load(SeqCst) {
                    v += 1;
                    for p in 0..SYNC_PAGES {
                        store_word(base, p * PAGE + 8 * (p % WORDS), tag(3, p as u64, v));
                    }
                }
                v
            });
            let syncer = s.spawn(move || {
                while !stop_syncs.load(SeqCst) {
                    syncfs(fd)?;
                    syncs.fetch_add(1, SeqCst);
                }
                Ok::<(), String>(())
            });
            std::thread::sleep(Duration::from_millis(700 + 150 * round));
            stop_stores.store(true, SeqCst);
            let v = storer.join();
            stop_syncs.store(true, SeqCst);
            (v, syncer.join())
        });
        let v = match (stored, synced) {
            (Ok(v), Ok(Ok(()))) => v,
            (_, Ok(Err(e))) => return Err(CaseError::Fail(e)),
            _ => return Err(CaseError::Fail("a thread panicked".into())),
        };
        syncfs(&fd)?;
        let s0 = ctx.snap()?;
        fd.fsync()?;
        let s1 = ctx.snap()?;
        if let (Some(c0), Some(c1)) = (&s0, &s1) {
            let left =
                c1.get(Field::EntriesFlushed) as i128 - c0.get(Field::EntriesFlushed) as i128;
            if left != 0 {
                ctx.fail(&format!(
                    "round {round}: after the last syncfs, fsync still flushed {left} entries \
                     (stores the syncfs left dirty)"
                ));
            }
            total_left += left;
        }
        let mut buf = [0u8; 8];
        for p in 0..SYNC_PAGES {
            fd.pread_exact(&mut buf, (p * PAGE + 8 * (p % WORDS)) as u64)?;
            let w = u64::from_le_bytes(buf);
            ctx.check_eq(
                &format!("round {round}: last value of page {p}"),
                tag(3, p as u64, v),
                w,
            );
        }
    }
    ctx.diag(&format!(
        "{} syncfs calls; entries left dirty: {total_left}",
        syncs.load(SeqCst)
    ));
    Ok(())
}

// ---------------------------------------------------------------------------
// Write faults racing the writeback walk of the same file

/// Few pages, so the storer re-faults a page soon after a walk zapped it and
/// the walk keeps finding pages the storer is faulting on.
const RACE_PAGES: usize = 64;

/// A thread stores round and round over the pages of one file while another
/// fsyncs that file in a loop, so write faults (mark, then make the PTE
/// writable) run while the walk claims the same entries (clear the mark,
/// then zap). A fault that made its PTE writable after the walk cleared the
/// mark and zapped would leave a writable PTE on a clean entry: stores
/// through it never fault, are never marked, and no fsync flushes them.
/// After each round one last fsync leaves every entry clean and every PTE
/// read-only or gone, so one store to each page must fault and mark it
/// (entries_marked grows by exactly the page count), and the fsync after
/// that flushes each page once. The last values must read back.
pub fn write_faults_racing_fsync_leave_no_unmarked_writable_pte(ctx: &mut Ctx) -> CaseResult {
    let fd = Fd::create(&ctx.file(""))?;
    fd.ftruncate((RACE_PAGES * PAGE) as u64)?;
    let map = Map::shared_rw(&fd, RACE_PAGES * PAGE)?;
    let base = map.addr();
    let secs = secs_env("FERROTEST_COHERENCE_SECS", 6);
    let rounds = 6u32;
    let per_round = secs / rounds;
    let fsyncs = AtomicU64::new(0);
    let mut faults = 0i128;
    let remarks0 = crate::gup::stat_value(ctx, "upgrade_remarks");
    for round in 1..=rounds {
        let v = store_while_syncing(
            per_round,
            |v| {
                for p in 0..RACE_PAGES {
                    store_word(base, p * PAGE + 8 * (p % WORDS), tag(4, p as u64, v));
                }
            },
            || {
                fd.fsync()?;
                fsyncs.fetch_add(1, Relaxed);
                Ok(())
            },
        )?;
        fd.fsync()?;
        let s0 = ctx.snap()?;
        let v2 = v + 1;
        for p in 0..RACE_PAGES {
            store_word(base, p * PAGE + 8 * (p % WORDS), tag(4, p as u64, v2));
        }
        let s1 = ctx.snap()?;
        fd.fsync()?;
        let s2 = ctx.snap()?;
        if let (Some(c0), Some(c1), Some(c2)) = (&s0, &s1, &s2) {
            let marked =
                c1.get(Field::EntriesMarked) as i128 - c0.get(Field::EntriesMarked) as i128;
            let faulted = (c1.get(Field::WriteFaults) + c1.get(Field::PfnMkwrite)) as i128
                - (c0.get(Field::WriteFaults) + c0.get(Field::PfnMkwrite)) as i128;
            let flushed =
                c2.get(Field::EntriesFlushed) as i128 - c1.get(Field::EntriesFlushed) as i128;
            faults += faulted;
            let n = RACE_PAGES as i128;
            if marked != n || flushed != n {
                ctx.fail(&format!(
                    "round {round}: one store to each of {n} pages after an fsync marked {marked} \
                     entries ({faulted} write faults) and the next fsync flushed {flushed}: \
                     {} pages kept a writable PTE on a clean entry",
                    n - marked
                ));
            }
        }
        let mut buf = [0u8; 8];
        for p in 0..RACE_PAGES {
            fd.pread_exact(&mut buf, (p * PAGE + 8 * (p % WORDS)) as u64)?;
            ctx.check_eq(
                &format!("round {round}: last value of page {p}"),
                tag(4, p as u64, v2),
                u64::from_le_bytes(buf),
            );
        }
    }
    ctx.diag(&format!(
        "{} fsyncs racing the stores; {faults} faults after them",
        fsyncs.load(SeqCst)
    ));
    // ferrofs counts the faults that found their entry claimed between
    // their mark and their upgrade: the window this case is about.
    if let (Some(r0), Some(r1)) = (remarks0, crate::gup::stat_value(ctx, "upgrade_remarks")) {
        ctx.diag(&format!(
            "{} faults found their entry claimed before the upgrade",
            r1 - r0
        ));
        ctx.check(r1 > r0, || "no fault met a walk between its mark and its upgrade (upgrade_remarks did not grow): the race was not reached".into());
    }
    Ok(())
}

/// One round of a race of stores against writeback: `store(v)` for v = 1,
/// 2, ... in one thread and `sync()` in a loop in another, for `dur`; both
/// stop together. Returns the last v stored.
pub(crate) fn store_while_syncing(
    dur: Duration,
    store: impl Fn(u64) + Sync,
    sync: impl Fn() -> Result<(), String> + Sync,
) -> Result<u64, CaseError> {
    let stop = AtomicBool::new(false);
    let (stored, synced) = std::thread::scope(|s| {
        let (stop, store, sync) = (&stop, &store, &sync);
        let storer = s.spawn(move || {
            let mut v = 0u64;
            while !stop.load(Relaxed) {
                v += 1;
                store(v);
            }
            v
        });
        let syncer = s.spawn(move || {
            while !stop.load(Relaxed) {
                sync()?;
            }
            Ok::<(), String>(())
        });
        std::thread::sleep(dur);
        stop.store(true, SeqCst);
        (storer.join(), syncer.join())
    });
    match (stored, synced) {
        (Ok(v), Ok(Ok(()))) => Ok(v),
        (_, Ok(Err(e))) => Err(CaseError::Fail(e)),
        _ => Err(CaseError::Fail("a thread panicked".into())),
    }
}
