//! `truncate_race_stress`: stores, fsync and msync on a shared mapping of
//! file A race with truncation and hole punching of A, while file B is
//! rewritten and verified so that blocks freed from A get reused by B. If
//! ferrofs ever flushed or stored into a block A no longer owns, B changes.
//!
//! Stores beyond EOF raise SIGBUS. The handler maps an anonymous page over
//! the faulting page (so the store completes harmlessly when the handler
//! returns) and counts the fault; the storer then maps the file back over
//! the whole region.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libc::c_int;

use crate::counters::Field;
use crate::pattern::{self, Rng};
use crate::runner::{CaseResult, Ctx};
use crate::sys::{Fd, Map, PAGE};

/// File A: 1 MiB (4 KiB PTEs), or 8 MiB for the PMD variant (four 2 MiB
/// extents, mapped 2 MiB aligned, so stores fault PMDs in and truncates and
/// punches cut through them).
const A_PAGES: usize = 256;
const A_PAGES_PMD: usize = 2048;
/// File B is at most this long.
const B_MAX: usize = 128 * PAGE;

/// The run time: FERROTEST_STRESS_SECS, default 15 s.
pub fn duration() -> Duration {
    let secs = std::env::var("FERROTEST_STRESS_SECS")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(15);
    Duration::from_secs(secs)
}

/// The region the SIGBUS handler may patch, and its fault count.
static BUS_BASE: AtomicUsize = AtomicUsize::new(0);
static BUS_LEN: AtomicUsize = AtomicUsize::new(0);
static BUS_FAULTS: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_sigbus(_sig: c_int, info: *mut libc::siginfo_t, _uc: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    let base = BUS_BASE.load(SeqCst);
    let len = BUS_LEN.load(SeqCst);
    if base != 0 && addr >= base && addr < base + len {
        let page = addr & !(PAGE - 1);
        // SAFETY: replaces one page inside our own file mapping (checked
        // above) with anonymous memory; nothing holds references into it.
        // mmap is a plain syscall, safe enough in a handler.
        let p = unsafe {
            libc::mmap(
                page as *mut libc::c_void,
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if p != libc::MAP_FAILED {
            BUS_FAULTS.fetch_add(1, SeqCst);
            return;
        }
    }
    // Not ours (or no way out): the default action, so the access that
    // faulted kills the process when it is retried.
    // SAFETY: resetting a disposition is async-signal-safe.
    unsafe { libc::signal(libc::SIGBUS, libc::SIG_DFL) };
}

/// Installs the handler for the region; the old action, to restore.
fn install_handler(base: usize, len: usize) -> Result<libc::sigaction, String> {
    BUS_BASE.store(base, SeqCst);
    BUS_LEN.store(len, SeqCst);
    // SAFETY: all-zero is a valid sigaction (empty mask, no flags).
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = on_sigbus as *const () as usize;
    sa.sa_flags = libc::SA_SIGINFO;
    // SAFETY: all-zero is a valid sigaction, to be filled by the kernel.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: `sa` is a complete action with a handler of the SA_SIGINFO
    // signature; `old` is writable.
    if unsafe { libc::sigaction(libc::SIGBUS, &sa, &mut old) } != 0 {
        return Err(format!("sigaction: {}", std::io::Error::last_os_error()));
    }
    Ok(old)
}

fn restore_handler(old: &libc::sigaction) {
    // SAFETY: `old` came from sigaction.
    unsafe { libc::sigaction(libc::SIGBUS, old, std::ptr::null_mut()) };
    BUS_BASE.store(0, SeqCst);
    BUS_LEN.store(0, SeqCst);
}

/// What the threads share.
struct Shared {
    stop: AtomicBool,
    /// Pages of file A.
    a_pages: usize,
    /// Pages of A below this are within EOF (lowered before a truncation,
    /// raised after the extension).
    safe_pages: AtomicUsize,
    errors: Mutex<Vec<String>>,
}

impl Shared {
    fn error(&self, msg: String) {
        let mut e = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if e.len() < 20 {
            e.push(msg);
        }
        self.stop.store(true, SeqCst);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Relaxed)
    }
}

#[derive(Default, Debug)]
struct StorerStats {
    stores: u64,
    fsyncs: u64,
    msyncs: u64,
    remaps: u64,
}

/// Maps A over the whole region again (after the handler patched pages).
fn remap(a: &Fd, base: usize, a_len: usize) -> Result<(), String> {
    // SAFETY: MAP_FIXED over our own region of a_len bytes, which no Rust
    // reference points into; other threads' accesses see either mapping.
    let p = unsafe {
        libc::mmap(
            base as *mut libc::c_void,
            a_len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_FIXED,
            a.raw(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(format!(
            "mmap MAP_FIXED: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn storer(sh: &Shared, a: &Fd, base: usize, seed: u64) -> StorerStats {
    let (a_pages, a_len) = (sh.a_pages, sh.a_pages * PAGE);
    let mut rng = Rng::new(seed);
    let mut st = StorerStats::default();
    let mut seen = BUS_FAULTS.load(SeqCst);
    while !sh.stopped() {
        let op = rng.below(100);
        if op < 90 {
            // Mostly within the safe size, sometimes anywhere (SIGBUS).
            let limit = if rng.below(4) == 0 {
                a_pages
            } else {
                sh.safe_pages.load(SeqCst).max(1)
            };
            let off = rng.below(limit) * PAGE + rng.below(PAGE);
            let v = rng.next_u64() as u8;
            // SAFETY: `off < a_len`, inside the live region; a raw volatile
            // store. Beyond EOF it faults and the handler patches the page.
            unsafe { ((base + off) as *mut u8).write_volatile(v) };
            st.stores += 1;
        } else if op < 95 {
            let r = if rng.below(2) == 0 {
                a.fsync()
            } else {
                a.fdatasync()
            };
            if let Err(e) = r {
                sh.error(e);
            }
            st.fsyncs += 1;
        } else {
            let start = rng.below(a_pages);
            let n = 1 + rng.below((a_pages - start).min(32));
            // SAFETY: the range lies inside the live region.
            let r = unsafe {
                libc::msync(
                    (base + start * PAGE) as *mut libc::c_void,
                    n * PAGE,
                    libc::MS_SYNC,
                )
            };
            if r != 0 {
                sh.error(format!(
                    "msync pages {start}+{n}: {}",
                    std::io::Error::last_os_error()
                ));
            }
            st.msyncs += 1;
        }
        let now = BUS_FAULTS.load(SeqCst);
        if now != seen {
            if let Err(e) = remap(a, base, a_len) {
                sh.error(e);
            }
            seen = now;
            st.remaps += 1;
        }
    }
    st
}

#[derive(Default, Debug)]
struct TruncStats {
    shrinks: u64,
    punches: u64,
    punch_unsupported: bool,
}

fn truncator(sh: &Shared, a: &Fd, seed: u64) -> TruncStats {
    let (a_pages, a_len) = (sh.a_pages, sh.a_pages * PAGE);
    let mut rng = Rng::new(seed);
    let mut st = TruncStats::default();
    while !sh.stopped() {
        if st.punch_unsupported || rng.below(3) != 0 {
            let mut len = rng.below(a_pages + 1) * PAGE;
            if rng.below(2) == 0 {
                len = (len + rng.below(PAGE)).min(a_len);
            }
            sh.safe_pages.store(len / PAGE, SeqCst);
            if let Err(e) = a.ftruncate(len as u64) {
                sh.error(e);
                break;
            }
            std::thread::sleep(Duration::from_micros(rng.below(300) as u64));
            if let Err(e) = a.ftruncate(a_len as u64) {
                sh.error(e);
                break;
            }
            sh.safe_pages.store(a_pages, SeqCst);
            st.shrinks += 1;
        } else {
            let start = rng.below(a_pages);
            let n = 1 + rng.below((a_pages - start).min(16));
            let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
            match a.fallocate(mode, (start * PAGE) as u64, (n * PAGE) as u64) {
                Ok(()) => st.punches += 1,
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => st.punch_unsupported = true,
                Err(e) => sh.error(format!("punch hole pages {start}+{n}: {e}")),
            }
        }
        std::thread::sleep(Duration::from_micros(rng.below(200) as u64));
    }
    st
}

/// Checks that B holds exactly `len` bytes of pattern `seed`.
fn verify_b(b: &Fd, seed: u64, len: usize) -> Result<(), String> {
    let size = b.size()?;
    if size != len as u64 {
        return Err(format!("file B: size {size}, expected {len}"));
    }
    let mut buf = vec![0u8; len];
    b.pread_exact(&mut buf, 0)?;
    if let Some((off, want, got)) = pattern::first_mismatch(seed, 0, &buf) {
        return Err(format!(
            "file B (seed {seed:#x}, {len} bytes): first mismatch at offset {off}: \
             expected {want:#04x}, got {got:#04x}"
        ));
    }
    Ok(())
}

/// Rewrites B again and again; returns the rewrites and B's last content.
fn writer(sh: &Shared, b: &Fd, seed: u64) -> (u64, Option<(u64, usize)>) {
    let mut rng = Rng::new(seed);
    let mut last: Option<(u64, usize)> = None;
    let mut rounds = 0;
    let mut buf = vec![0u8; B_MAX];
    while !sh.stopped() {
        // B must still be what was written last round, A's activity in
        // between notwithstanding.
        if let Some((s, len)) = last {
            if let Err(e) = verify_b(b, s, len) {
                sh.error(format!("before rewrite {rounds}: {e}"));
                break;
            }
        }
        let s = rng.next_u64();
        let len = 1 + rng.below(B_MAX);
        pattern::fill(s, 0, &mut buf[..len]);
        let r = b
            .ftruncate(0)
            .and_then(|()| b.lseek0())
            .and_then(|()| b.write_all(&buf[..len]))
            .and_then(|()| b.fsync());
        if let Err(e) = r {
            sh.error(format!("rewrite {rounds}: {e}"));
            // B's content is unknown now: nothing to verify at the end.
            return (rounds, None);
        }
        last = Some((s, len));
        if let Err(e) = verify_b(b, s, len) {
            sh.error(format!("right after rewrite {rounds}: {e}"));
            break;
        }
        rounds += 1;
    }
    (rounds, last)
}

fn time_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

pub fn truncate_race_stress(ctx: &mut Ctx) -> CaseResult {
    race_stress(ctx, A_PAGES)
}

/// The same with an 8 MiB file A: the storers' faults map 2 MiB extents
/// with PMDs where they are whole (and re-fault them after every fsync and
/// truncate), truncates and punches cut through them.
pub fn truncate_race_stress_pmd(ctx: &mut Ctx) -> CaseResult {
    race_stress(ctx, A_PAGES_PMD)
}

fn race_stress(ctx: &mut Ctx, a_pages: usize) -> CaseResult {
    let a_len = a_pages * PAGE;
    let run_for = duration();
    let seed = std::env::var("FERROTEST_SEED")
        .ok()
        .and_then(|s| crate::args::parse_num(&s).ok())
        .unwrap_or_else(time_seed);
    ctx.diag(&format!(
        "stress: {} s, seed {seed:#x} (FERROTEST_SEED to repeat)",
        run_for.as_secs()
    ));
    let a = Fd::create(&ctx.file(""))?;
    a.ftruncate(a_len as u64)?;
    let b = Fd::create(&ctx.file(".b"))?;
    let map = Map::shared_rw(&a, a_len)?;
    let base = map.addr();
    let s0 = ctx.snap()?;
    let old = install_handler(base, a_len)?;
    BUS_FAULTS.store(0, SeqCst);

    let sh = Shared {
        stop: AtomicBool::new(false),
        a_pages,
        safe_pages: AtomicUsize::new(a_pages),
        errors: Mutex::new(Vec::new()),
    };
    let deadline = Instant::now() + run_for;
    let mut panicked = Vec::new();
    let (stores, trunc, written) = std::thread::scope(|s| {
        let (sh, a, b) = (&sh, &a, &b);
        let storers: Vec<_> = (0..2u64)
            .map(|i| s.spawn(move || storer(sh, a, base, seed ^ (i + 1))))
            .collect();
        let t = s.spawn(move || truncator(sh, a, seed ^ 0x10));
        let w = s.spawn(move || writer(sh, b, seed ^ 0x20));
        while Instant::now() < deadline && !sh.stopped() {
            std::thread::sleep(Duration::from_millis(50));
        }
        sh.stop.store(true, SeqCst);
        let stores: Vec<StorerStats> = storers
            .into_iter()
            .enumerate()
            .filter_map(|(i, h)| {
                h.join()
                    .map_err(|_| panicked.push(format!("storer {i}")))
                    .ok()
            })
            .collect();
        let trunc = t.join().map_err(|_| panicked.push("truncator".into())).ok();
        let written = w.join().map_err(|_| panicked.push("writer".into())).ok();
        (stores, trunc, written)
    });
    restore_handler(&old);

    for (i, st) in stores.iter().enumerate() {
        ctx.diag(&format!(
            "storer {i}: {} stores, {} fsync/fdatasync, {} msync, {} remaps",
            st.stores, st.fsyncs, st.msyncs, st.remaps
        ));
    }
    ctx.diag(&format!("SIGBUS caught: {}", BUS_FAULTS.load(SeqCst)));
    if let Some(t) = &trunc {
        ctx.diag(&format!(
            "truncator: {} shrink+extend, {} hole punches{}",
            t.shrinks,
            t.punches,
            if t.punch_unsupported {
                " (punch hole not supported)"
            } else {
                ""
            }
        ));
    }
    for who in &panicked {
        ctx.fail(&format!("{who} thread panicked"));
    }
    for e in sh.errors.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        ctx.fail(e);
    }

    map.unmap()?;
    a.fsync()?;
    ctx.check_eq("size of A at the end", a_len as u64, a.size()?);
    if let Some((rounds, last)) = written {
        ctx.diag(&format!("writer: {rounds} rewrites of B"));
        match last {
            Some((s, len)) => {
                if let Err(e) = verify_b(&b, s, len) {
                    ctx.fail(&format!("at the end: {e}"));
                }
            }
            None if ctx.failed() => {}
            None => ctx.fail("file B was never written"),
        }
    }
    let s1 = ctx.snap()?;
    if let (Some(c0), Some(c1)) = (&s0, &s1) {
        let d = |f: Field| c1.get(f) as i128 - c0.get(f) as i128;
        ctx.diag(&format!(
            "counter deltas: entries_marked {}, entries_flushed {}, entries_removed {}, \
             revalidate_drops {}, fsync_calls {}",
            d(Field::EntriesMarked),
            d(Field::EntriesFlushed),
            d(Field::EntriesRemoved),
            d(Field::RevalidateDrops),
            d(Field::FsyncCalls)
        ));
        let gone = d(Field::EntriesFlushed) + d(Field::EntriesRemoved) + d(Field::RevalidateDrops);
        // Marks from before the run may be retired during it, so the
        // per-run sums only get a diagnostic; the absolute invariant is
        // the assertion.
        if gone > d(Field::EntriesMarked) {
            ctx.diag("note: more entries retired than marked during the run");
        }
    }
    ctx.check_invariant(&s1);
    Ok(())
}
