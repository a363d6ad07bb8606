//! `concurrent_metadata_stress`: several threads run metadata operations at
//! once, so that transactions of different journal areas are in flight
//! together: each thread creates, appends to (write + fsync), truncates,
//! renames (inside its own directory, into and out of a shared one) and
//! unlinks files of its own, makes and removes subdirectories, and stores
//! through one mapping of a shared sparse file into holes of its own pages
//! (block allocations of one inode from several threads). Every thread
//! keeps a model of its files; at the end every file's bytes, every
//! directory listing and every page of the shared file must match it. The
//! shell test (tests/45-journal.sh, FERROTEST_MT_KEEP=1) then checks fsck
//! and the same bytes after a remount.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use crate::pattern::{self, Rng};
use crate::runner::{CaseResult, Ctx};
use crate::stress::duration;
use crate::sys::{Fd, Map, PAGE};

/// Threads: at least 4, or twice the CPUs.
fn threads() -> usize {
    std::thread::available_parallelism().map_or(4, |n| (2 * n.get()).max(4))
}

/// Pages of the shared file (sparse); thread t owns pages p with p % T == t.
const SHARED_PAGES: usize = 1024;

pub fn dirs(dir: &Path) -> (PathBuf, PathBuf) {
    (
        dir.join("ferrotest-mt-own"),
        dir.join("ferrotest-mt-shared"),
    )
}

struct Model {
    /// path -> (seed, length)
    files: BTreeMap<PathBuf, (u64, u64)>,
    subdirs: Vec<PathBuf>,
}

fn write_pattern(fd: &Fd, seed: u64, from: u64, to: u64) -> Result<(), String> {
    let mut buf = vec![0u8; (to - from) as usize];
    pattern::fill(seed, from, &mut buf);
    fd.pwrite_all(&buf, from)
}

fn check_file(p: &Path, seed: u64, len: u64) -> Result<(), String> {
    let data = std::fs::read(p).map_err(|e| format!("read {}: {e}", p.display()))?;
    if data.len() as u64 != len {
        return Err(format!(
            "{}: {} bytes, model says {len}",
            p.display(),
            data.len()
        ));
    }
    if let Some((off, want, got)) = pattern::first_mismatch(seed, 0, &data) {
        return Err(format!(
            "{}: byte {off} is {got:#x}, want {want:#x}",
            p.display()
        ));
    }
    Ok(())
}

fn worker(
    t: usize,
    seed: u64,
    own: &Path,
    shared: &Path,
    base: usize,
    nthreads: usize,
    until: Instant,
) -> Result<(Model, u64), String> {
    let mine = own.join(format!("t{t}"));
    std::fs::create_dir(&mine).map_err(|e| format!("mkdir {}: {e}", mine.display()))?;
    let mut rng = Rng::new(seed ^ (t as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut m = Model {
        files: BTreeMap::new(),
        subdirs: Vec::new(),
    };
    let mut n = 0u64;
    let mut ops = 0u64;
    let pick = |m: &Model, rng: &mut Rng| -> Option<PathBuf> {
        if m.files.is_empty() {
            return None;
        }
        let i = rng.below(m.files.len());
        m.files.keys().nth(i).cloned()
    };
    while Instant::now() < until {
        ops += 1;
        match rng.below(10) {
            0..=2 => {
                // create + data + fsync, in the own or the shared directory
                n += 1;
                let d = if rng.below(3) == 0 { shared } else { &mine };
                let p = d.join(format!("t{t}-f{n}"));
                let fseed = rng.next_u64();
                let len = 1 + rng.below(4 * PAGE) as u64;
                let fd = Fd::create(&p)?;
                write_pattern(&fd, fseed, 0, len)?;
                fd.fsync()?;
                m.files.insert(p, (fseed, len));
            }
            3 | 4 => {
                // append 4 KiB + fsync
                if let Some(p) = pick(&m, &mut rng) {
                    let (s, len) = m.files[&p];
                    let fd = Fd::open_rw(&p)?;
                    write_pattern(&fd, s, len, len + PAGE as u64)?;
                    fd.fsync()?;
                    m.files.insert(p, (s, len + PAGE as u64));
                }
            }
            5 => {
                // rename: inside the own directory, or across to the other
                if let Some(p) = pick(&m, &mut rng) {
                    n += 1;
                    let d = if rng.below(2) == 0 { shared } else { &mine };
                    let q = d.join(format!("t{t}-r{n}"));
                    std::fs::rename(&p, &q).map_err(|e| format!("rename {}: {e}", p.display()))?;
                    let v = m.files.remove(&p).unwrap_or((0, 0));
                    m.files.insert(q, v);
                }
            }
            6 => {
                // unlink, or truncate shorter
                if let Some(p) = pick(&m, &mut rng) {
                    if rng.below(2) == 0 {
                        crate::sys::unlink(&p)?;
                        m.files.remove(&p);
                    } else {
                        let (s, len) = m.files[&p];
                        let to = rng.below(len as usize + 1) as u64;
                        Fd::open_rw(&p)?.ftruncate(to)?;
                        m.files.insert(p, (s, to));
                    }
                }
            }
            7 => {
                // mkdir, or rmdir of an empty one
                if !m.subdirs.is_empty() && rng.below(2) == 0 {
                    let d = m.subdirs.swap_remove(rng.below(m.subdirs.len()));
                    std::fs::remove_dir(&d).map_err(|e| format!("rmdir {}: {e}", d.display()))?;
                } else {
                    n += 1;
                    let d = mine.join(format!("d{n}"));
                    std::fs::create_dir(&d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
                    m.subdirs.push(d);
                }
            }
            _ => {
                // stores into own pages of the shared mapping (holes fill)
                for _ in 0..8 {
                    let k = rng.below(SHARED_PAGES / nthreads);
                    let page = k * nthreads + t;
                    let word = (page as u64) << 8 | t as u64;
                    // SAFETY: `base` is the live shared mapping of
                    // SHARED_PAGES pages (the case keeps it until the
                    // threads are joined); the page is this thread's own.
                    unsafe { std::ptr::write_volatile((base + page * PAGE) as *mut u64, word) };
                }
                if rng.below(4) == 0 {
                    // SAFETY: msync of that mapping, no memory is touched.
                    if unsafe {
                        libc::msync(
                            base as *mut libc::c_void,
                            SHARED_PAGES * PAGE,
                            libc::MS_SYNC,
                        )
                    } != 0
                    {
                        return Err(format!("msync: {}", std::io::Error::last_os_error()));
                    }
                }
            }
        }
    }
    Ok((m, ops))
}

pub fn concurrent_metadata_stress(ctx: &mut Ctx) -> CaseResult {
    let run_for = duration();
    let seed = std::env::var("FERROTEST_SEED")
        .ok()
        .and_then(|s| crate::args::parse_num(&s).ok())
        .unwrap_or(0x5eed_2026);
    let nthreads = threads();
    ctx.diag(&format!(
        "stress: {nthreads} threads, {} s, seed {seed:#x} (FERROTEST_SEED to repeat)",
        run_for.as_secs()
    ));
    let (own, shared) = dirs(&ctx.dir);
    let _ = std::fs::remove_dir_all(&own);
    let _ = std::fs::remove_dir_all(&shared);
    std::fs::create_dir(&own).map_err(|e| format!("mkdir: {e}"))?;
    std::fs::create_dir(&shared).map_err(|e| format!("mkdir: {e}"))?;
    let f = Fd::create(&ctx.file(""))?;
    f.ftruncate((SHARED_PAGES * PAGE) as u64)?;
    let map = Map::shared_rw(&f, SHARED_PAGES * PAGE)?;
    let until = Instant::now() + run_for;
    let errors = Mutex::new(Vec::new());
    let models: Vec<Option<(Model, u64)>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..nthreads)
            .map(|t| {
                let (own, shared, errors, base) = (&own, &shared, &errors, map.addr());
                s.spawn(
                    move || match worker(t, seed, own, shared, base, nthreads, until) {
                        Ok(m) => Some(m),
                        Err(e) => {
                            if let Ok(mut v) = errors.lock() {
                                v.push(format!("thread {t}: {e}"));
                            }
                            None
                        }
                    },
                )
            })
            .collect();
        hs.into_iter().map(|h| h.join().ok().flatten()).collect()
    });
    for e in errors.lock().map(|v| v.clone()).unwrap_or_default() {
        ctx.fail(&e);
    }
    if ctx.failed() {
        return Ok(());
    }
    // Everything the models say, and nothing else.
    let mut want: BTreeMap<PathBuf, (u64, u64)> = BTreeMap::new();
    let mut want_dirs = Vec::new();
    let mut ops = 0;
    for (t, m) in models.into_iter().enumerate() {
        let Some((m, n)) = m else {
            ctx.fail(&format!("thread {t} panicked"));
            continue;
        };
        ops += n;
        want.extend(m.files);
        want_dirs.push(own.join(format!("t{t}")));
        want_dirs.extend(m.subdirs);
    }
    ctx.diag(&format!(
        "{ops} operations, {} files, {} directories at the end",
        want.len(),
        want_dirs.len()
    ));
    for (p, &(s, len)) in &want {
        if let Err(e) = check_file(p, s, len) {
            ctx.fail(&e);
        }
    }
    let mut found = Vec::new();
    let mut stack = vec![own.clone(), shared.clone()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|e| format!("readdir {}: {e}", d.display()))?;
        for e in rd {
            let e = e.map_err(|e| format!("readdir {}: {e}", d.display()))?;
            let p = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                if !want_dirs.contains(&p) {
                    ctx.fail(&format!(
                        "{}: a directory the model does not have",
                        p.display()
                    ));
                }
                stack.push(p);
            } else {
                found.push(p);
            }
        }
    }
    found.sort();
    let names: Vec<PathBuf> = want.keys().cloned().collect();
    ctx.check(found == names, || {
        format!(
            "{} files found, {} in the model (first extra: {:?}, first missing: {:?})",
            found.len(),
            names.len(),
            found.iter().find(|p| !want.contains_key(*p)),
            names.iter().find(|p| !found.contains(p))
        )
    });
    for d in &want_dirs {
        ctx.check(d.is_dir(), || format!("{}: missing directory", d.display()));
    }
    for page in 0..SHARED_PAGES {
        let mut b = [0u8; 8];
        map.copy_out(page * PAGE, &mut b);
        let v = u64::from_le_bytes(b);
        let ok = v == 0 || v == ((page as u64) << 8 | (page % nthreads) as u64);
        ctx.check(ok, || format!("shared file page {page}: {v:#x}"));
    }
    map.msync(0, SHARED_PAGES * PAGE, libc::MS_SYNC)?;
    // With FERROTEST_MT_KEEP=1 the files stay for the shell test (fsck,
    // remount, compare); the runner removes the shared file.
    if std::env::var("FERROTEST_MT_KEEP").ok().as_deref() != Some("1") {
        let _ = std::fs::remove_dir_all(&own);
        let _ = std::fs::remove_dir_all(&shared);
    }
    Ok(())
}
