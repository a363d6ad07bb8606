//! The benchmark cases. Each produces one or more series of samples; a
//! series is one row of the results table (see args.rs for the list).
//!
//! Times are taken with CLOCK_MONOTONIC around exactly the calls measured;
//! setup (creating files, pre-faulting, re-dirtying) is outside the timed
//! region unless a series says it measures it.

use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::Instant;

use crate::args::PagePick;
use crate::flush::{self, Insn};
use crate::json::Value;
use crate::stats::Summary;
use crate::sys::{self, secs, Fd, Map, PAGE};

const MIB: u64 = 1 << 20;
/// The file of cases 1, 3, 5 and 8.
const BIG: u64 = 256 * MIB;
/// Case 5's smaller sweeps.
const SMALL: u64 = 32 * MIB;
/// Case 1 and 8: dirty page counts.
pub const DIRTY_COUNTS: [usize; 4] = [1, 16, 256, 4096];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Microseconds per operation; lower is better.
    Micros,
    /// Pages (or operations) per second; higher is better.
    Rate(&'static str),
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Micros => "us",
            Unit::Rate(u) => u,
        }
    }
    fn better(self) -> &'static str {
        match self {
            Unit::Micros => "lower",
            Unit::Rate(_) => "higher",
        }
    }
}

/// One row of results.
#[derive(Debug, Clone)]
pub struct Series {
    pub id: String,
    pub case: u32,
    /// Series of one curve share a group (plots, ratios); `x` is their
    /// abscissa (dirty pages, file size in bytes, ...).
    pub group: &'static str,
    pub x: Option<u64>,
    pub title: String,
    pub unit: Unit,
    /// Shown in the Markdown table (otherwise only in the JSON file).
    pub table: bool,
    pub samples: Vec<f64>,
}

impl Series {
    pub fn to_json(&self) -> Value {
        let sum = Summary::of(&self.samples);
        let summary = match sum {
            Some(s) => Value::obj(vec![
                ("n", Value::Int(s.n as i64)),
                ("min", Value::Num(s.min)),
                ("p10", Value::Num(s.p10)),
                ("median", Value::Num(s.median)),
                ("p90", Value::Num(s.p90)),
                ("max", Value::Num(s.max)),
            ]),
            None => Value::Null,
        };
        Value::obj(vec![
            ("id", Value::str(&self.id)),
            ("case", Value::Int(self.case as i64)),
            ("group", Value::str(self.group)),
            ("x", self.x.map_or(Value::Null, |x| Value::Int(x as i64))),
            ("title", Value::str(&self.title)),
            ("unit", Value::str(self.unit.name())),
            ("better", Value::str(self.unit.better())),
            ("table", Value::Bool(self.table)),
            ("summary", summary),
            ("samples", Value::nums(&self.samples)),
        ])
    }
}

/// How many samples each kind of series takes.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// fsync/msync/flush latencies (cases 1, 2, 4, 8).
    pub latency: usize,
    /// fsync with nothing dirty (case 3): cheap, so more.
    pub clean: usize,
    /// Fault sweeps over the 256 MiB file (case 5): the slowest samples
    /// under emulation (65536 faults each).
    pub big_sweeps: usize,
    /// Sweeps over 32 or 64 MiB (case 5, and case 4's whole-mapping msync).
    pub sweeps: usize,
    /// Batches of operations (cases 6, 7), and operations per batch.
    pub batches: usize,
    pub batch: usize,
    /// Untimed runs before each latency series.
    pub warmup: usize,
    /// Turns of each thread count in case 13.
    pub scale_reps: usize,
    /// Seconds of each turn of case 13's appends, creates and system calls:
    /// every thread runs for this long from one common start.
    pub scale_window: f64,
}

impl Plan {
    pub fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                latency: 15,
                clean: 31,
                big_sweeps: 3,
                sweeps: 3,
                batches: 7,
                batch: 32,
                warmup: 2,
                scale_reps: 5,
                scale_window: 0.25,
            }
        } else {
            Plan {
                latency: 51,
                clean: 101,
                big_sweeps: 7,
                sweeps: 9,
                batches: 15,
                batch: 128,
                warmup: 3,
                scale_reps: 9,
                scale_window: 0.5,
            }
        }
    }
}

pub struct Bench {
    pub dir: PathBuf,
    pub fs: String,
    pub plan: Plan,
    pub insn: Insn,
    pub series: Vec<Series>,
    start: Instant,
    /// Case 2's largest file is the largest that fits, but at most this.
    pub max_file: u64,
}

/// xorshift64: page picks that defeat any "same page as last time" shortcut.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Case 1's page choice: `n` pages spread evenly over `pages` (one page per
/// stride of pages / n, so they fall in as many 2 MiB regions as can be), or
/// the first `n` pages (runs filling as few 2 MiB regions as can be).
pub fn page_list(spread: bool, n: usize, pages: usize) -> Vec<usize> {
    assert!(n > 0 && n <= pages);
    if spread {
        let stride = pages / n;
        (0..n).map(|i| i * stride).collect()
    } else {
        (0..n).collect()
    }
}

fn human_bytes(b: u64) -> String {
    if b >= MIB && b.is_multiple_of(MIB) {
        format!("{} MiB", b / MIB)
    } else if b >= 1024 && b.is_multiple_of(1024) {
        format!("{} KiB", b / 1024)
    } else {
        format!("{b} B")
    }
}

/// "1 dirty page", "16 dirty pages".
fn pages_word(n: usize, adj: &str) -> String {
    format!("{n} {adj}page{}", if n == 1 { "" } else { "s" })
}

/// Median, p10 and p90 of a series, in its unit, for progress lines.
fn describe(s: &Series) -> String {
    match Summary::of(&s.samples) {
        Some(m) => {
            let f = |v: f64| match s.unit {
                Unit::Micros => format!("{v:.1}"),
                Unit::Rate(_) => format!("{v:.0}"),
            };
            format!(
                "median {} {} (p10 {}, p90 {}; {} samples)",
                f(m.median),
                s.unit.name(),
                f(m.p10),
                f(m.p90),
                m.n
            )
        }
        None => "no samples".to_string(),
    }
}

impl Bench {
    pub fn new(dir: &Path, fs: &str, quick: bool, max_mib: u64) -> Bench {
        Bench {
            dir: dir.to_path_buf(),
            fs: fs.to_string(),
            plan: Plan::new(quick),
            insn: Insn::detect(),
            series: Vec::new(),
            start: Instant::now(),
            max_file: max_mib * MIB,
        }
    }

    pub fn elapsed(&self) -> f64 {
        secs(self.start)
    }

    pub fn say(&self, msg: &str) {
        eprintln!("[ferrobench {} +{:.0}s] {msg}", self.fs, self.elapsed());
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn record(&mut self, s: Series, took: f64) {
        self.say(&format!("{}: {} [{took:.1} s]", s.title, describe(&s)));
        self.series.push(s);
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        id: String,
        case: u32,
        group: &'static str,
        x: Option<u64>,
        title: String,
        unit: Unit,
        table: bool,
        samples: Vec<f64>,
        took: f64,
    ) {
        self.record(
            Series {
                id,
                case,
                group,
                x,
                title,
                unit,
                table,
                samples,
            },
            took,
        );
    }

    /// A file of `size` bytes of written (not unwritten or sparse) data,
    /// made durable.
    fn make_file(&self, name: &str, size: u64) -> Result<(PathBuf, Fd), String> {
        let path = self.path(name);
        let t = Instant::now();
        let fd = Fd::create(&path)?;
        let chunk = vec![0xa5u8; MIB as usize];
        let mut off = 0;
        while off < size {
            let n = (size - off).min(MIB) as usize;
            fd.pwrite_all(&chunk[..n], off)?;
            off += n as u64;
        }
        fd.fsync()?;
        if size >= 64 * MIB {
            self.say(&format!(
                "created {name}, {} of data [{:.1} s]",
                human_bytes(size),
                secs(t)
            ));
        }
        Ok((path, fd))
    }

    /// Maps all of `fd` and stores to every page once, then fsyncs: from
    /// here on only the pages stored to again are dirty.
    fn map_prefaulted(&self, fd: &Fd, size: u64) -> Result<Map, String> {
        let map = Map::shared(fd, size as usize)?;
        for p in 0..size as usize / PAGE {
            map.store_word(p, p as u64);
        }
        fd.fsync()?;
        Ok(map)
    }

    /// Case 1 (fsync after storing to N pages) and case 8 (the same cache
    /// lines flushed from user space), on the 256 MiB file.
    pub fn dirty_pages(
        &mut self,
        fd: &Fd,
        map: &Map,
        fsync: bool,
        floor: bool,
    ) -> Result<(), String> {
        let pages = (BIG as usize) / PAGE;
        let plan = self.plan;
        let insn = self.insn;
        for spread in [true, false] {
            let (lay, lay_title) = if spread {
                ("spread", "spread over 256 MiB")
            } else {
                ("runs", "as runs in 2 MiB regions")
            };
            for n in DIRTY_COUNTS {
                let list = page_list(spread, n, pages);
                if fsync {
                    let t = Instant::now();
                    let (mut fs_t, mut st_t) = (Vec::new(), Vec::new());
                    for i in 0..plan.warmup + plan.latency {
                        let t0 = Instant::now();
                        for &p in &list {
                            map.dirty_page(p, i as u64);
                        }
                        let t1 = Instant::now();
                        fd.fsync()?;
                        let t2 = Instant::now();
                        if i >= plan.warmup {
                            st_t.push((t1 - t0).as_secs_f64() * 1e6);
                            fs_t.push((t2 - t1).as_secs_f64() * 1e6);
                        }
                    }
                    let took = secs(t);
                    self.push(
                        format!("c1.fsync.{lay}.{n}"),
                        1,
                        if spread { "fsync_spread" } else { "fsync_runs" },
                        Some(n as u64),
                        format!("fsync, {} {lay_title}", pages_word(n, "dirty ")),
                        Unit::Micros,
                        true,
                        fs_t,
                        took,
                    );
                    self.push(
                        format!("c1.store.{lay}.{n}"),
                        1,
                        if spread { "store_spread" } else { "store_runs" },
                        Some(n as u64),
                        format!("store to {} {lay_title}, after an fsync", pages_word(n, "")),
                        Unit::Micros,
                        spread,
                        st_t,
                        0.0,
                    );
                }
                if floor {
                    let t = Instant::now();
                    let mut fl_t = Vec::new();
                    for i in 0..plan.warmup + plan.latency {
                        for &p in &list {
                            map.dirty_page(p, i as u64);
                        }
                        let t0 = Instant::now();
                        for &p in &list {
                            // SAFETY: page `p` lies inside the live mapping.
                            unsafe { flush::flush_range(insn, map.addr() + p * PAGE, PAGE) };
                        }
                        flush::sfence();
                        if i >= plan.warmup {
                            fl_t.push(secs(t0) * 1e6);
                        }
                    }
                    // Leave nothing dirty for the next series.
                    fd.fsync()?;
                    let took = secs(t);
                    self.push(
                        format!("c8.floor.{lay}.{n}"),
                        8,
                        if spread { "floor_spread" } else { "floor_runs" },
                        Some(n as u64),
                        format!(
                            "floor: {} of {} {lay_title}, no syscall",
                            insn.name(),
                            pages_word(n, "")
                        ),
                        Unit::Micros,
                        spread,
                        fl_t,
                        took,
                    );
                }
            }
        }
        Ok(())
    }

    /// Case 2: fsync with 1 dirty page in files of growing size. Returns the
    /// ratio of the largest file's median to the 4 KiB file's.
    ///
    /// One file grows by appending (pwrite) from 4 KiB to the largest size,
    /// under one mapping of the largest size made up front; at each size the
    /// new pages are pre-faulted writable (stored to) and the file fsynced,
    /// then each sample stores to one page and times the fsync. By default
    /// the first page: the same page at every size, so that only the file
    /// size changes.
    pub fn fsync_file_size(
        &mut self,
        samples: usize,
        pick: PagePick,
    ) -> Result<Option<f64>, String> {
        // Room for the largest file: what is free now, less some slack for
        // the filesystem's own metadata (block maps, journal), in 2 MiB
        // granules.
        let free = sys::free_bytes(&self.dir)?;
        let room = free.saturating_sub(64 * MIB) / (2 * MIB) * (2 * MIB);
        let largest = room.min(self.max_file);
        let mut sizes = vec![4096, 64 * MIB, 256 * MIB];
        if largest > 256 * MIB {
            sizes.push(largest);
        } else {
            self.say(&format!(
                "case 2 stops at 256 MiB (room for {}, limit {})",
                human_bytes(room),
                human_bytes(self.max_file)
            ));
        }
        let top = *sizes.last().unwrap_or(&0);
        let path = self.path("c2.dat");
        let fd = Fd::create(&path)?;
        let map = Map::shared(&fd, top as usize)?;
        let chunk = vec![0xa5u8; MIB as usize];
        let mut medians = Vec::new();
        let mut rng = Rng::new(0x2545_f491_4f6c_dd1d);
        let mut have = 0u64;
        for &size in &sizes {
            let t = Instant::now();
            // Grow: append data, then store to every new page once.
            let mut off = have;
            while off < size {
                let n = (size - off).min(MIB) as usize;
                fd.pwrite_all(&chunk[..n], off)?;
                off += n as u64;
            }
            for p in have as usize / PAGE..size as usize / PAGE {
                map.store_word(p, p as u64);
            }
            fd.fsync()?;
            if size >= 64 * MIB {
                self.say(&format!(
                    "grew c2.dat to {} and pre-faulted it [{:.1} s]",
                    human_bytes(size),
                    secs(t)
                ));
            }
            have = size;
            let pages = size / PAGE as u64;
            let mut v = Vec::new();
            for i in 0..self.plan.warmup + samples {
                let page = match pick {
                    PagePick::First => 0,
                    PagePick::Last => pages - 1,
                    PagePick::Random => rng.below(pages),
                };
                map.dirty_page(page as usize, i as u64);
                let t0 = Instant::now();
                fd.fsync()?;
                if i >= self.plan.warmup {
                    v.push(secs(t0) * 1e6);
                }
            }
            let is_largest = size == top && sizes.len() > 3;
            let s = Series {
                id: match pick {
                    PagePick::First => format!("c2.fsync.{size}"),
                    p => format!("c2.fsync.{size}.{}", p.name()),
                },
                case: 2,
                group: "fsync_filesize",
                x: Some(size),
                title: format!(
                    "fsync, 1 dirty page{}, {} file{}",
                    match pick {
                        PagePick::First => String::new(),
                        p => format!(" ({} page)", p.name()),
                    },
                    human_bytes(size),
                    if is_largest {
                        " (largest that fits)"
                    } else {
                        ""
                    }
                ),
                unit: Unit::Micros,
                table: true,
                samples: v,
            };
            medians.push(Summary::of(&s.samples).map(|m| m.median));
            self.record(s, secs(t));
        }
        drop(map);
        drop(fd);
        sys::unlink(&path)?;
        Ok(match (medians.first(), medians.last()) {
            (Some(Some(a)), Some(Some(b))) if *a > 0.0 && medians.len() > 1 => Some(b / a),
            _ => None,
        })
    }

    /// Case 3: fsync of the mapped, pre-faulted, clean 256 MiB file.
    pub fn fsync_clean(&mut self, fd: &Fd) -> Result<(), String> {
        let t = Instant::now();
        fd.fsync()?;
        let mut v = Vec::new();
        for i in 0..self.plan.warmup + self.plan.clean {
            let t0 = Instant::now();
            fd.fsync()?;
            if i >= self.plan.warmup {
                v.push(secs(t0) * 1e6);
            }
        }
        self.push(
            "c3.fsync.clean".into(),
            3,
            "fsync_clean",
            None,
            "fsync, nothing dirty (256 MiB file, mapped)".into(),
            Unit::Micros,
            true,
            v,
            secs(t),
        );
        Ok(())
    }

    /// Case 4: msync(MS_SYNC) of 64 KiB in the middle of a 64 MiB mapping
    /// that is all dirty (every page re-dirtied before each sample), and of
    /// the whole mapping for comparison.
    pub fn msync_range(&mut self) -> Result<(), String> {
        let size = 64 * MIB;
        let (path, fd) = self.make_file("c4.dat", size)?;
        let map = self.map_prefaulted(&fd, size)?;
        let pages = size as usize / PAGE;
        for (whole, len) in [(false, 64 * 1024usize), (true, size as usize)] {
            let off = if whole { 0 } else { size as usize / 2 };
            let t = Instant::now();
            let mut v = Vec::new();
            // Re-dirtying all of it after an msync of all of it faults on
            // every page: the whole-mapping series takes fewer samples, and
            // no untimed ones (the 64 KiB series before it warmed up).
            let (warm, n) = if whole {
                (0, self.plan.sweeps)
            } else {
                (self.plan.warmup, self.plan.latency)
            };
            for i in 0..warm + n {
                for p in 0..pages {
                    map.store_word(p, i as u64);
                }
                let t0 = Instant::now();
                map.msync(off, len, libc::MS_SYNC)?;
                if i >= warm {
                    v.push(secs(t0) * 1e6);
                }
            }
            let (id, title) = if whole {
                (
                    "c4.msync.all",
                    "msync(MS_SYNC) of all of a dirty 64 MiB mapping",
                )
            } else {
                (
                    "c4.msync.64k",
                    "msync(MS_SYNC) of 64 KiB inside a dirty 64 MiB mapping",
                )
            };
            self.push(
                id.into(),
                4,
                "msync",
                Some(len as u64),
                title.into(),
                Unit::Micros,
                true,
                v,
                secs(t),
            );
        }
        drop(map);
        drop(fd);
        sys::unlink(&path)
    }

    /// Case 5: first-touch faults over the 256 MiB file through a fresh
    /// mapping per sample, in pages per second; with the mapping where the
    /// kernel puts it (2 MiB aligned: ext4 and xfs may map 2 MiB at a time)
    /// and with only 4 KiB PTEs possible; and write faults into holes.
    pub fn faults(&mut self, fd: &Fd) -> Result<(), String> {
        for (write, only4k) in [(false, false), (true, false), (false, true), (true, true)] {
            // With 4 KiB PTEs only, every page takes a fault on every file
            // system: the first 32 MiB of the file are enough for a rate.
            let len = if only4k { SMALL } else { BIG } as usize;
            let pages = len / PAGE;
            let t = Instant::now();
            let mut v = Vec::new();
            let mut sink = 0u64;
            let n = if only4k {
                self.plan.sweeps
            } else {
                self.plan.big_sweeps
            };
            for i in 0..n {
                // Nothing dirty left from the previous sweep.
                fd.fsync()?;
                let map = if only4k {
                    Map::shared_4k_only(fd, len)?
                } else {
                    Map::shared(fd, len)?
                };
                let t0 = Instant::now();
                if write {
                    for p in 0..pages {
                        map.store_word(p, i as u64);
                    }
                } else {
                    for p in 0..pages {
                        sink = sink.wrapping_add(map.load_word(p));
                    }
                }
                v.push(pages as f64 / secs(t0));
                drop(map);
            }
            fd.fsync()?;
            std::hint::black_box(sink);
            let kind = if write { "write" } else { "read" };
            let place = if only4k { "4k" } else { "auto" };
            self.push(
                format!("c5.{kind}.{place}"),
                5,
                "faults",
                None,
                format!(
                    "first-touch {kind} faults, {}",
                    if only4k {
                        "first 32 MiB of it, 4 KiB PTEs only"
                    } else {
                        "256 MiB file, mapping 2 MiB aligned"
                    }
                ),
                Unit::Rate("pages/s"),
                true,
                v,
                secs(t),
            );
        }
        // Write faults into holes: every page allocates (and zeroes) a block.
        let size = SMALL;
        let path = self.path("c5.sparse");
        let sparse = Fd::create(&path)?;
        let t = Instant::now();
        let mut v = Vec::new();
        for i in 0..self.plan.sweeps {
            sparse.ftruncate(0)?;
            sparse.ftruncate(size)?;
            sparse.fsync()?;
            let map = Map::shared(&sparse, size as usize)?;
            let t0 = Instant::now();
            for p in 0..size as usize / PAGE {
                map.store_word(p, i as u64);
            }
            v.push((size as usize / PAGE) as f64 / secs(t0));
        }
        drop(sparse);
        sys::unlink(&path)?;
        self.push(
            "c5.write.hole".into(),
            5,
            "faults",
            None,
            "first-touch write faults into holes (allocating), 32 MiB sparse file".into(),
            Unit::Rate("pages/s"),
            true,
            v,
            secs(t),
        );
        Ok(())
    }

    /// Case 6: 4 KiB write + fsync appends; 4 KiB pwrite + fdatasync
    /// overwrites at random block offsets of a 64 MiB file.
    pub fn write_sync(&mut self) -> Result<(), String> {
        let buf = vec![0x3cu8; PAGE];
        let (batch, batches) = (self.plan.batch, self.plan.batches);
        let path = self.path("c6.append");
        let t = Instant::now();
        let mut v = Vec::new();
        for _ in 0..batches {
            let fd = Fd::create(&path)?;
            fd.fsync()?;
            let t0 = Instant::now();
            for _ in 0..batch {
                fd.write_all(&buf)?;
                fd.fsync()?;
            }
            v.push(batch as f64 / secs(t0));
        }
        sys::unlink(&path)?;
        self.push(
            "c6.append".into(),
            6,
            "write",
            None,
            "4 KiB append (write) + fsync".into(),
            Unit::Rate("ops/s"),
            true,
            v,
            secs(t),
        );

        let size = 64 * MIB;
        let (path, fd) = self.make_file("c6.over", size)?;
        let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
        let t = Instant::now();
        let mut v = Vec::new();
        for _ in 0..batches {
            let t0 = Instant::now();
            for _ in 0..batch {
                fd.pwrite_all(&buf, rng.below(size / PAGE as u64) * PAGE as u64)?;
                fd.fdatasync()?;
            }
            v.push(batch as f64 / secs(t0));
        }
        drop(fd);
        sys::unlink(&path)?;
        self.push(
            "c6.overwrite".into(),
            6,
            "write",
            None,
            "4 KiB overwrite (pwrite) + fdatasync, 64 MiB file".into(),
            Unit::Rate("ops/s"),
            true,
            v,
            secs(t),
        );
        Ok(())
    }

    /// Case 7: create (with 128 bytes of data) + fsync, rename, unlink.
    pub fn metadata(&mut self) -> Result<(), String> {
        let dir = self.path("c7");
        std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let (batch, batches) = (self.plan.batch * 2, self.plan.batches);
        let data = [0x42u8; 128];
        let t = Instant::now();
        let (mut cr, mut rn, mut ul) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..batches {
            let names: Vec<(PathBuf, PathBuf)> = (0..batch)
                .map(|i| (dir.join(format!("a{i}")), dir.join(format!("b{i}"))))
                .collect();
            let t0 = Instant::now();
            for (a, _) in &names {
                let fd = Fd::open(a, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o644)?;
                fd.write_all(&data)?;
                fd.fsync()?;
            }
            cr.push(batch as f64 / secs(t0));
            let t0 = Instant::now();
            for (a, b) in &names {
                sys::rename(a, b)?;
            }
            rn.push(batch as f64 / secs(t0));
            let t0 = Instant::now();
            for (_, b) in &names {
                sys::unlink(b)?;
            }
            ul.push(batch as f64 / secs(t0));
        }
        std::fs::remove_dir(&dir).map_err(|e| format!("rmdir {}: {e}", dir.display()))?;
        let took = secs(t);
        for (id, title, v) in [
            ("c7.create", "create + write 128 B + fsync", cr),
            ("c7.rename", "rename", rn),
            ("c7.unlink", "unlink", ul),
        ] {
            self.push(
                id.into(),
                7,
                "metadata",
                None,
                title.into(),
                Unit::Rate("ops/s"),
                true,
                v,
                took,
            );
        }
        Ok(())
    }

    /// Case 9: make 64 B or 4 KiB stores at random pages of a 64 MiB file
    /// durable, the two ways PMDK can: through a MAP_SYNC mapping with
    /// clwb + sfence from user space (`pmem_persist`, no system call), and,
    /// where MAP_SYNC is refused, through a plain shared mapping with
    /// msync(MS_SYNC) of the page (`pmem_msync`). Both mappings are
    /// pre-faulted, so the MAP_SYNC series measures the stores and the
    /// flush; the msync one also pays the write fault that follows each
    /// msync's clean of the page.
    pub fn persist(&mut self) -> Result<(), String> {
        let size = 64 * MIB;
        let (path, fd) = self.make_file("c9.dat", size)?;
        let pages = size / PAGE as u64;
        let (batch, batches) = (self.plan.batch * 4, self.plan.batches);
        for sync in [true, false] {
            let map = if sync {
                match Map::shared_sync(&fd, size as usize) {
                    Ok(m) => m,
                    Err(e) => {
                        self.say(&format!("case 9: no MAP_SYNC series on {}: {e}", self.fs));
                        continue;
                    }
                }
            } else {
                Map::shared(&fd, size as usize)?
            };
            for p in 0..pages as usize {
                map.store_word(p, p as u64);
            }
            if !sync {
                // The msync series starts clean; the MAP_SYNC one stays as
                // an application's mapping is: faulted in once, never synced.
                fd.fsync()?;
            }
            for len in [64usize, PAGE] {
                let mut rng = Rng::new(0x2545_f491_4f6c_dd1d ^ len as u64);
                let t = Instant::now();
                let mut v = Vec::new();
                for i in 0..batches + 1 {
                    let t0 = Instant::now();
                    for _ in 0..batch {
                        let page = rng.below(pages) as usize;
                        let at = page * PAGE + if len == 64 { (i % 64) * 64 } else { 0 };
                        for w in (0..len).step_by(8) {
                            // SAFETY: in bounds of the live writable mapping.
                            unsafe { ((map.addr() + at + w) as *mut u64).write_volatile(i as u64) };
                        }
                        if sync {
                            // SAFETY: the range lies inside the mapping.
                            unsafe { flush::flush_range(self.insn, map.addr() + at, len) };
                            flush::sfence();
                        } else {
                            map.msync(page * PAGE, PAGE, libc::MS_SYNC)?;
                        }
                    }
                    // The first batch warms up (faults after the fsync).
                    if i > 0 {
                        v.push(batch as f64 / secs(t0));
                    }
                }
                let how = if sync {
                    "MAP_SYNC mapping, clwb + sfence"
                } else {
                    "shared mapping, msync(MS_SYNC) of the page"
                };
                let size_name = if len == 64 { "64 B" } else { "4 KiB" };
                self.push(
                    format!(
                        "c9.{}.{}",
                        if sync { "mapsync" } else { "msync" },
                        if len == 64 { "64" } else { "4k" }
                    ),
                    9,
                    "persist",
                    Some(len as u64),
                    format!("persist a {size_name} store at a random page: {how}"),
                    Unit::Rate("ops/s"),
                    true,
                    v,
                    secs(t),
                );
            }
            drop(map);
        }
        drop(fd);
        sys::unlink(&path)
    }

    /// Case 10: fio's libpmem engine, 4 KiB random writes over a 64 MiB
    /// file, one job; IOPS per run. The engine maps the file with
    /// pmem_map_file and uses non-temporal copies + drain when the mapping
    /// is pmem (MAP_SYNC), else it msyncs.
    pub fn fio_libpmem(&mut self) -> Result<(), String> {
        let path = self.path("c10.fio");
        let runs = if self.plan.batches > 7 { 5 } else { 3 };
        let t = Instant::now();
        let mut v = Vec::new();
        for _ in 0..runs {
            let out = std::process::Command::new("fio")
                .args([
                    "--name=c10",
                    "--ioengine=libpmem",
                    "--rw=randwrite",
                    "--bs=4k",
                    "--size=64M",
                    "--runtime=3",
                    "--time_based",
                    "--output-format=json",
                ])
                .arg(format!("--filename={}", path.display()))
                .output()
                .map_err(|e| format!("running fio: {e} (apt-get install fio)"))?;
            if !out.status.success() {
                return Err(format!(
                    "fio libpmem on {}: {} {}",
                    self.fs,
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                        .lines()
                        .last()
                        .unwrap_or("")
                ));
            }
            let text = String::from_utf8_lossy(&out.stdout);
            v.push(fio_write_iops(&text).ok_or("fio: no write iops in its JSON output")?);
        }
        let _ = sys::unlink(&path);
        self.push(
            "c10.fio.libpmem".into(),
            10,
            "fio",
            None,
            "fio libpmem engine, 4 KiB random writes, 64 MiB file".into(),
            Unit::Rate("IOPS"),
            true,
            v,
            secs(t),
        );
        Ok(())
    }

    /// Case 11: bulk I/O as `dd bs=1M` does it: 256 MiB written with 1 MiB
    /// pwrites into a new file, then fsync; overwritten the same way; read
    /// back with 1 MiB preads. MiB/s, one sample per pass.
    pub fn bulk(&mut self) -> Result<(), String> {
        let size = BIG;
        let path = self.path("c11.dat");
        let chunk = vec![0x5au8; MIB as usize];
        let passes = self.plan.sweeps.min(5);
        let (mut w, mut o, mut r) = (Vec::new(), Vec::new(), Vec::new());
        let t = Instant::now();
        for _ in 0..passes {
            let _ = std::fs::remove_file(&path);
            let fd = Fd::create(&path)?;
            // The first pass allocates, the second overwrites.
            for v in [&mut w, &mut o] {
                let t0 = Instant::now();
                let mut off = 0;
                while off < size {
                    fd.pwrite_all(&chunk, off)?;
                    off += MIB;
                }
                fd.fsync()?;
                v.push((size / MIB) as f64 / secs(t0));
            }
            let mut buf = vec![0u8; MIB as usize];
            let t0 = Instant::now();
            let mut off = 0;
            while off < size {
                let n = fd.pread(&mut buf, off)?;
                if n == 0 {
                    return Err("bulk read: short file".into());
                }
                off += n as u64;
            }
            r.push((size / MIB) as f64 / secs(t0));
            std::hint::black_box(&buf);
        }
        let _ = std::fs::remove_file(&path);
        let took = secs(t);
        for (id, title, v) in [
            (
                "c11.write",
                "bulk write of a new 256 MiB file, 1 MiB pwrites + fsync",
                w,
            ),
            (
                "c11.overwrite",
                "bulk overwrite of it, 1 MiB pwrites + fsync",
                o,
            ),
            ("c11.read", "bulk read of it, 1 MiB preads", r),
        ] {
            self.push(
                id.into(),
                11,
                "bulk",
                None,
                title.into(),
                Unit::Rate("MiB/s"),
                true,
                v,
                took,
            );
        }
        Ok(())
    }

    /// Case 12: the same new 256 MiB file on the fresh file system and after
    /// aging it ([`age`]): the share of it that can be mapped with 2 MiB
    /// PMDs (from FIEMAP: aligned 2 MiB of the file backed by one
    /// physically contiguous, 2 MiB-aligned run of the device; the
    /// condition all three file systems need), first-touch read faults
    /// over it through a 2 MiB-aligned mapping, and fsync after stores to
    /// 256 pages spread over it. Runs last: it leaves the file system aged.
    pub fn aging(&mut self) -> Result<(), String> {
        for aged in [false, true] {
            if aged {
                let t = Instant::now();
                let (files, rounds) = age(&self.dir, 0x5eed_a9e1, 3)?;
                self.say(&format!(
                    "aged: {rounds} fill/delete rounds, {files} files left [{:.1} s]",
                    secs(t)
                ));
            }
            let tag = if aged { "aged" } else { "fresh" };
            let (path, fd) = self.make_file("c12.dat", BIG)?;
            let share = pmd_share(&fd, BIG)?;
            let pages = BIG as usize / PAGE;
            let mut rates = Vec::new();
            let mut sink = 0u64;
            for _ in 0..self.plan.big_sweeps {
                fd.fsync()?;
                let map = Map::shared(&fd, BIG as usize)?;
                let t0 = Instant::now();
                for p in 0..pages {
                    sink = sink.wrapping_add(map.load_word(p));
                }
                rates.push(pages as f64 / secs(t0));
            }
            std::hint::black_box(sink);
            let map = Map::shared(&fd, BIG as usize)?;
            let list = page_list(true, 256, pages);
            let mut lat = Vec::new();
            for i in 0..self.plan.latency {
                for &p in &list {
                    map.store_word(p, i as u64);
                }
                let t0 = Instant::now();
                fd.fsync()?;
                lat.push(secs(t0) * 1e6);
            }
            drop(map);
            drop(fd);
            sys::unlink(&path)?;
            let t = 0.0;
            self.push(
                format!("c12.{tag}.share"),
                12,
                "aging",
                None,
                format!(
                    "{tag} file system: share of a new 256 MiB file that is PMD-mappable (FIEMAP)"
                ),
                Unit::Rate("%"),
                true,
                vec![share * 100.0],
                t,
            );
            self.push(
                format!("c12.{tag}.faults"),
                12,
                "aging",
                None,
                format!("{tag} file system: first-touch read faults over that file"),
                Unit::Rate("pages/s"),
                true,
                rates,
                t,
            );
            self.push(
                format!("c12.{tag}.fsync256"),
                12,
                "aging",
                None,
                format!("{tag} file system: fsync after stores to 256 spread pages of it"),
                Unit::Micros,
                true,
                lat,
                t,
            );
        }
        Ok(())
    }

    /// Case 13: scaling from 1 to 2 threads (and to `nproc` when there are
    /// more cores): write faults on allocated blocks over separate files and
    /// over one shared file (4 KiB PTEs only, each sweep after an fsync, so
    /// every page faults), 4 KiB append + fsync to separate files, and
    /// create + fsync in separate directories and in one. Rates are totals
    /// over the threads; one series per thread count, and the ratio of the
    /// 2-thread rate to the 1-thread rate, one sample per turn (the two runs
    /// of a turn are next to each other in time). Two references with no
    /// file system in them, run in the same turns: a getppid loop and
    /// first-touch faults on anonymous memory. Their ratios are what the
    /// machine gives two threads of kernel work (under TCG, less than 2).
    pub fn scaling(&mut self) -> Result<(), String> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut counts = vec![1usize, 2];
        if cpus > 2 {
            counts.push(cpus);
        }
        let maxt = *counts.iter().max().unwrap_or(&2);
        let len = 16 * MIB as usize;
        let pages = len / PAGE;
        // Files for the fault series, made once.
        let mut files = Vec::new();
        for t in 0..maxt {
            files.push(self.make_file(&format!("c13.f{t}"), len as u64)?);
        }
        let (shared_path, shared) = self.make_file("c13.shared", (len * maxt) as u64)?;
        let sweeps = self.plan.sweeps;
        let dir = self.path("c13");
        let window = self.plan.scale_window;
        // A work gets its thread's index and the barrier all threads of the
        // turn pass once their set-up (files, mappings) is done, so their
        // timed parts run at the same time.
        type Work<'a> = dyn Fn(usize, &Barrier) -> Result<f64, String> + Sync + 'a;
        let run = |n: usize, work: &Work| -> Result<f64, String> {
            let start = Barrier::new(n);
            let start = &start;
            let res: Vec<Result<f64, String>> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..n).map(|t| s.spawn(move || work(t, start))).collect();
                hs.into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
                    .collect()
            });
            res.into_iter().sum()
        };
        // Operations per second of `op` run over and over for `window`
        // seconds (at least once): the same span for every thread of a
        // turn, however fast the file system (a fixed count of operations
        // took ext4-dax 180 ms but ferrofs 8 ms, too short a span for two
        // threads to overlap in reliably).
        let timed =
            |op: &mut dyn FnMut(usize) -> Result<(), String>| -> Result<(f64, usize), String> {
                let t0 = Instant::now();
                let mut ops = 0usize;
                loop {
                    op(ops)?;
                    ops += 1;
                    if secs(t0) >= window {
                        break;
                    }
                }
                Ok((ops as f64 / secs(t0), ops))
            };
        // Each returns the operations per second of one thread.
        let faults_sep = |t: usize, start: &Barrier| -> Result<f64, String> {
            let fd = &files[t].1;
            let map = Map::shared_4k_only(fd, len)?;
            start.wait();
            let mut best = Vec::new();
            for i in 0..sweeps {
                fd.fsync()?;
                let t0 = Instant::now();
                for p in 0..pages {
                    map.store_word(p, i as u64);
                }
                best.push(pages as f64 / secs(t0));
            }
            Ok(crate::stats::Summary::of(&best).map_or(0.0, |s| s.median))
        };
        let faults_shared = |t: usize, start: &Barrier| -> Result<f64, String> {
            let map = Map::shared_4k_only(&shared, len * maxt)?;
            start.wait();
            let mut best = Vec::new();
            for i in 0..sweeps {
                // Each thread's own region; fsync of its range cleans it.
                let lo = t * pages;
                let t0 = Instant::now();
                for p in lo..lo + pages {
                    map.store_word(p, i as u64);
                }
                best.push(pages as f64 / secs(t0));
                map.msync(lo * PAGE, len, libc::MS_SYNC)?;
            }
            Ok(crate::stats::Summary::of(&best).map_or(0.0, |s| s.median))
        };
        let appends = |t: usize, start: &Barrier| -> Result<f64, String> {
            let p = dir.join(format!("a{t}"));
            let buf = vec![0x3cu8; PAGE];
            let fd = Fd::create(&p)?;
            start.wait();
            let (r, _) = timed(&mut |_| {
                fd.write_all(&buf)?;
                fd.fsync()
            })?;
            drop(fd);
            sys::unlink(&p)?;
            Ok(r)
        };
        let creates = |shared_dir: bool| {
            let dir = &dir;
            let timed = &timed;
            move |t: usize, start: &Barrier| -> Result<f64, String> {
                let d = if shared_dir {
                    dir.join("one")
                } else {
                    dir.join(format!("d{t}"))
                };
                let _ = std::fs::create_dir_all(&d);
                let name = |i: usize| d.join(format!("t{t}-{i}"));
                start.wait();
                let (r, made) = timed(&mut |i| {
                    let fd = Fd::open(
                        &name(i),
                        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                        0o644,
                    )?;
                    fd.write_all(&[0x42u8; 128])?;
                    fd.fsync()
                })?;
                for i in 0..made {
                    sys::unlink(&name(i))?;
                }
                Ok(r)
            }
        };
        let syscalls = |_t: usize, start: &Barrier| -> Result<f64, String> {
            start.wait();
            let (r, _) = timed(&mut |_| {
                for _ in 0..100 {
                    // SAFETY: getppid has no arguments and cannot fail.
                    std::hint::black_box(unsafe { libc::getppid() });
                }
                Ok(())
            })?;
            Ok(r * 100.0)
        };
        let anon = |_t: usize, start: &Barrier| -> Result<f64, String> {
            let map = Map::anon_4k_only(len)?;
            start.wait();
            let mut best = Vec::new();
            for i in 0..sweeps {
                let t0 = Instant::now();
                for p in 0..pages {
                    map.store_word(p, i as u64);
                }
                best.push(pages as f64 / secs(t0));
                map.advise(libc::MADV_DONTNEED)?;
            }
            Ok(crate::stats::Summary::of(&best).map_or(0.0, |s| s.median))
        };
        std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let cs = creates(false);
        let co = creates(true);
        let kinds: [(&str, &str, &Work); 7] = [
            (
                "ref.syscall",
                "reference, no file system: getppid calls",
                &syscalls,
            ),
            (
                "ref.anon",
                "reference, no file system: first-touch faults on anonymous memory",
                &anon,
            ),
            (
                "faults.sep",
                "write faults, separate files (4 KiB PTEs)",
                &faults_sep,
            ),
            (
                "faults.shared",
                "write faults, one shared file (4 KiB PTEs)",
                &faults_shared,
            ),
            (
                "append.sep",
                "4 KiB append + fsync, separate files",
                &appends,
            ),
            (
                "create.sep",
                "create + 128 B + fsync, separate directories",
                &cs,
            ),
            ("create.one", "create + 128 B + fsync, one directory", &co),
        ];
        let reps = self.plan.scale_reps;
        let mut out = Vec::new();
        for (id, title, work) in kinds {
            let t = Instant::now();
            // Thread counts take turns (1, 2, 1, 2, ...) rather than one
            // series after the other, so a drift of the machine's speed
            // during the case (TCG: the host's load) lands on both sides
            // of the ratio alike.
            let mut by_n: Vec<(usize, Vec<f64>)> =
                counts.iter().map(|&n| (n, Vec::new())).collect();
            // One untimed turn first: the first turn of a kind ran apart
            // from the rest in both directions (ratios of 1.07 and 3.09
            // next to ~2 on ext4-dax, 1.27 on ferrofs), as its files,
            // directories and mappings were first touched.
            for &n in &counts {
                run(n, work)?;
            }
            for _ in 0..reps {
                for (n, v) in by_n.iter_mut() {
                    v.push(run(*n, work)?);
                }
            }
            for (n, v) in &by_n {
                out.push((
                    format!("c13.{id}.t{n}"),
                    format!("{title}, {n} thread{}", if *n == 1 { "" } else { "s" }),
                    Unit::Rate("ops/s"),
                    v.clone(),
                    secs(t),
                ));
            }
            // One ratio per turn: its 2-thread run over its 1-thread run.
            let ratios = match by_n.iter().find(|(n, _)| *n == 2) {
                Some((_, two)) => by_n[0]
                    .1
                    .iter()
                    .zip(two)
                    .map(|(&a, &b)| if a > 0.0 { b / a } else { 0.0 })
                    .collect(),
                None => Vec::new(),
            };
            out.push((
                format!("c13.{id}.scale2"),
                format!("{title}: 2 threads / 1 thread"),
                Unit::Rate("x"),
                ratios,
                0.0,
            ));
        }
        for (id, title, unit, v, took) in out {
            self.push(id, 13, "scaling", None, title, unit, true, v, took);
        }
        let _ = std::fs::remove_dir_all(&dir);
        drop(shared);
        sys::unlink(&shared_path)?;
        for (p, fd) in files {
            drop(fd);
            sys::unlink(&p)?;
        }
        Ok(())
    }

    /// Runs the selected cases: case 2 first, while the filesystem is empty
    /// (its largest file needs the room), then the others in order, sharing
    /// one 256 MiB file (cases 1, 3, 5 and 8). The series end up sorted by
    /// case.
    pub fn run(&mut self, cases: &[u32]) -> Result<(), String> {
        let has = |c: u32| cases.contains(&c);
        // Case 2 first (its largest file needs the room), case 12 last (it
        // leaves the file system aged).
        let mut order: Vec<u32> = cases.iter().copied().filter(|&c| c == 2).collect();
        order.extend(cases.iter().copied().filter(|&c| c != 2 && c != 12));
        order.extend(cases.iter().copied().filter(|&c| c == 12));
        // The shared file, and for cases 1, 3 and 8 its pre-faulted mapping.
        let mut big: Option<(PathBuf, Fd, Option<Map>)> = None;
        for c in order {
            if big.is_none() && [1, 3, 5, 8].contains(&c) {
                let (path, fd) = self.make_file("big.dat", BIG)?;
                let map = if [1, 3, 8].iter().any(|&c| has(c)) {
                    let t = Instant::now();
                    let m = self.map_prefaulted(&fd, BIG)?;
                    self.say(&format!("pre-faulted big.dat [{:.1} s]", secs(t)));
                    Some(m)
                } else {
                    None
                };
                big = Some((path, fd, map));
            }
            let t = Instant::now();
            let what = match c {
                1 => "fsync after storing to N pages",
                2 => "fsync of 1 dirty page against file size",
                3 => "fsync with nothing dirty",
                4 => "msync of a 64 KiB range",
                5 => "first-touch page faults",
                6 => "write + fsync, pwrite + fdatasync",
                7 => "create, rename, unlink",
                8 => "the floor: user-space cache-line flush",
                9 => "persist: MAP_SYNC + clwb vs msync",
                10 => "fio libpmem engine",
                11 => "bulk 1 MiB write, overwrite, read",
                12 => "fresh and aged: PMD share, faults, fsync",
                13 => "scaling: 1 and 2 threads",
                _ => continue,
            };
            // Case 8 runs with case 1 when both are selected.
            if c == 8 && has(1) {
                continue;
            }
            self.say(&format!("case {c}: {what}"));
            let fd = big.as_ref().map(|(_, fd, _)| fd);
            let map = big.as_ref().and_then(|(_, _, m)| m.as_ref());
            let missing = || "no shared file".to_string();
            match c {
                1 => self.dirty_pages(
                    fd.ok_or_else(missing)?,
                    map.ok_or_else(missing)?,
                    true,
                    has(8),
                )?,
                2 => {
                    let n = self.plan.latency;
                    self.fsync_file_size(n, PagePick::First)?;
                }
                3 => self.fsync_clean(fd.ok_or_else(missing)?)?,
                4 => self.msync_range()?,
                5 => self.faults(fd.ok_or_else(missing)?)?,
                6 => self.write_sync()?,
                7 => self.metadata()?,
                9 => self.persist()?,
                10 => self.fio_libpmem()?,
                11 => self.bulk()?,
                12 => self.aging()?,
                13 => self.scaling()?,
                8 => self.dirty_pages(
                    fd.ok_or_else(missing)?,
                    map.ok_or_else(missing)?,
                    false,
                    true,
                )?,
                _ => {}
            }
            self.say(&format!("case {c} done [{:.1} s]", secs(t)));
        }
        if let Some((path, fd, map)) = big {
            drop(map);
            drop(fd);
            sys::unlink(&path)?;
        }
        self.series.sort_by_key(|s| s.case);
        Ok(())
    }
}

/// The aging workload: `rounds` times, fill the file system to 85% with
/// files of mixed sizes (log-uniform from 4 KiB to 16 MiB, each written by
/// appends of 4 KiB to 256 KiB), then delete a random three quarters of
/// the files. Deterministic for a seed. Returns (files left, rounds).
pub fn age(dir: &Path, seed: u64, rounds: usize) -> Result<(usize, usize), String> {
    let adir = dir.join("aging");
    std::fs::create_dir_all(&adir).map_err(|e| format!("mkdir {}: {e}", adir.display()))?;
    let mut rng = Rng::new(seed);
    let mut files: Vec<PathBuf> = Vec::new();
    let mut name = 0u64;
    let chunk = vec![0x61u8; 256 * 1024];
    for _ in 0..rounds {
        loop {
            let (total, free) = statvfs(&adir)?;
            if free * 100 < total * 15 {
                break;
            }
            // log2 of the size: 12 (4 KiB) .. 24 (16 MiB).
            let bits = 12 + rng.below(13);
            let size = (1u64 << bits) + rng.below(1u64 << bits);
            let size = size.min(free.saturating_sub(total / 10)).max(4096);
            name += 1;
            let p = adir.join(format!("f{name}"));
            let fd = Fd::create(&p)?;
            let mut off = 0;
            while off < size {
                let n = (4096 * (1 + rng.below(64))).min(size - off) as usize;
                fd.pwrite_all(&chunk[..n], off)?;
                off += n as u64;
            }
            files.push(p);
        }
        let mut keep = Vec::new();
        for p in files.drain(..) {
            if rng.below(4) == 0 {
                keep.push(p);
            } else {
                sys::unlink(&p)?;
            }
        }
        files = keep;
    }
    Ok((files.len(), rounds))
}

/// (total, free) bytes of the file system holding `p`.
fn statvfs(p: &Path) -> Result<(u64, u64), String> {
    let c = sys::cpath(p)?;
    // SAFETY: all-zero is a valid `struct statvfs`.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated, `st` writable.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(format!("statvfs {}: {}", p.display(), sys::last_err()));
    }
    let bs = st.f_frsize as u64;
    Ok((st.f_blocks as u64 * bs, st.f_bavail as u64 * bs))
}

/// The share of the first `size` bytes of `fd` that a file system can map
/// with 2 MiB PMDs: aligned 2 MiB ranges of the file lying inside one
/// FIEMAP extent whose physical offset is congruent to the logical one
/// modulo 2 MiB (the device's pmem starts 2 MiB aligned).
fn pmd_share(fd: &Fd, size: u64) -> Result<f64, String> {
    const M2: u64 = 2 << 20;
    let ext = fd.fiemap(0, size).map_err(|e| format!("FIEMAP: {e}"))?;
    let mut ok = 0u64;
    for r in 0..size / M2 {
        let lo = r * M2;
        let hit = ext.iter().any(|e| {
            e.logical <= lo
                && e.logical + e.len >= lo + M2
                && (e.physical + (lo - e.logical)).is_multiple_of(M2)
        });
        if hit {
            ok += 1;
        }
    }
    Ok(ok as f64 / (size / M2) as f64)
}

/// `jobs[0].write.iops` of fio's JSON output (a number after the first
/// `"write"` object's `"iops"` key).
fn fio_write_iops(json: &str) -> Option<f64> {
    let w = json.find("\"write\"")?;
    let rest = &json[w..];
    let k = rest.find("\"iops\"")?;
    let after = rest[k + 6..].trim_start().strip_prefix(':')?.trim_start();
    let end = after
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e' || c == '-' || c == '+'))
        .unwrap_or(after.len());
    after[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fio_iops_from_json() {
        let j = r#"{"jobs":[{"read":{"iops":0.0},"write":{"io_bytes":1,"iops" : 12345.678901,"x":1}}]}"#;
        assert_eq!(fio_write_iops(j), Some(12345.678901));
        assert_eq!(fio_write_iops("{}"), None);
    }

    #[test]
    fn page_lists() {
        assert_eq!(page_list(true, 1, 65536), vec![0]);
        let s = page_list(true, 16, 65536);
        assert_eq!(s.len(), 16);
        assert_eq!(s[1], 4096);
        // Spread: 256 pages over 128 regions of 2 MiB, two per region.
        let s = page_list(true, 256, 65536);
        let regions: std::collections::BTreeSet<usize> = s.iter().map(|p| p / 512).collect();
        assert_eq!(regions.len(), 128);
        // Runs: 4096 pages fill 8 regions.
        let r = page_list(false, 4096, 65536);
        let regions: std::collections::BTreeSet<usize> = r.iter().map(|p| p / 512).collect();
        assert_eq!(regions.len(), 8);
    }

    #[test]
    fn rng_stays_below() {
        let mut r = Rng::new(1);
        for _ in 0..1000 {
            assert!(r.below(7) < 7);
        }
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(4096), "4 KiB");
        assert_eq!(human_bytes(768 * MIB), "768 MiB");
        assert_eq!(human_bytes(100), "100 B");
        assert_eq!(pages_word(1, "dirty "), "1 dirty page");
        assert_eq!(pages_word(16, ""), "16 pages");
    }
}
