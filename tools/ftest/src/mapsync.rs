//! MAP_SYNC, FIEMAP and what S_DAX makes the kernel do, as an application
//! sees them:
//!
//! - a MAP_SHARED_VALIDATE | MAP_SYNC mapping is accepted (what PMDK's
//!   `pmem_map_file` tries to decide `is_pmem`), its write faults are
//!   counted as synchronous, /proc/self/smaps flags it `sf`, and stores
//!   into holes made durable with clwb + sfence only are read back;
//! - FS_IOC_FIEMAP reports exactly the allocated pages, with physical
//!   offsets that are the device's (checked by reading the block device
//!   with O_DIRECT at those offsets), the last extent flagged, holes as gaps;
//! - statx reports STATX_ATTR_DAX;
//! - a long-term pin (io_uring fixed buffers, FOLL_LONGTERM) of a DAX
//!   mapping is refused with EOPNOTSUPP, as on ext4-dax, while anonymous
//!   memory registers: the kernel sees the VMA as fsdax.
//!
//! The power-cut proof of MAP_SYNC is elsewhere: the crash rounds (`mmap-fill
//! --sync=mapsync`) and ferrocrash's MapWrite step.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::gup::{err_text, stat_value, Anon};
use crate::pattern;
use crate::runner::{CaseError, CaseResult, Ctx};
use crate::sys::{
    self, last_err, Extent, Fd, FlushInsn, Map, FIEMAP_EXTENT_LAST, MAP_SHARED_VALIDATE, MAP_SYNC,
    PAGE,
};

fn errno() -> i32 {
    last_err().raw_os_error().unwrap_or(0)
}

fn map_sync(fd: &Fd, len: usize) -> Result<Map, String> {
    Map::new(
        fd,
        len,
        libc::PROT_READ | libc::PROT_WRITE,
        MAP_SHARED_VALIDATE | MAP_SYNC,
    )
}

/// The VmFlags line of the /proc/self/smaps entry that starts at `addr`.
fn smaps_flags(addr: usize) -> Result<String, String> {
    let s = std::fs::read_to_string("/proc/self/smaps").map_err(|e| format!("smaps: {e}"))?;
    let head = format!("{addr:x}-");
    let mut inside = false;
    for line in s.lines() {
        if line.starts_with(&head) {
            inside = true;
        } else if inside {
            if let Some(f) = line.strip_prefix("VmFlags:") {
                return Ok(f.trim().to_string());
            }
        }
    }
    Err(format!("no smaps entry with VmFlags at {addr:#x}"))
}

/// The pages `extents` cover; fails on overlaps, disorder, unaligned
/// extents and a LAST flag anywhere but on the final extent.
fn covered(ctx: &mut Ctx, what: &str, extents: &[Extent]) -> BTreeSet<u64> {
    let mut pages = BTreeSet::new();
    let mut prev_end = 0u64;
    for (k, e) in extents.iter().enumerate() {
        ctx.check(
            e.logical % PAGE as u64 == 0 && e.len % PAGE as u64 == 0 && e.len > 0,
            || format!("{what}: extent {k} {e:?} is not whole pages"),
        );
        ctx.check(e.physical % PAGE as u64 == 0, || {
            format!("{what}: extent {k} {e:?}: physical offset not page aligned")
        });
        ctx.check(k == 0 || e.logical >= prev_end, || {
            format!("{what}: extent {k} {e:?} overlaps or precedes the one before")
        });
        let last = k + 1 == extents.len();
        ctx.check((e.flags & FIEMAP_EXTENT_LAST != 0) == last, || {
            format!(
                "{what}: extent {k} of {}: LAST flag {}",
                extents.len(),
                e.flags & 1
            )
        });
        prev_end = e.logical + e.len;
        for p in e.logical / PAGE as u64..prev_end / PAGE as u64 {
            pages.insert(p);
        }
    }
    pages
}

/// The block device a file lives on, from its st_dev (sysfs names it).
fn device_of(path: &std::path::Path) -> Result<PathBuf, String> {
    let (maj, min) = sys::dev_of(path)?;
    let u = std::fs::read_to_string(format!("/sys/dev/block/{maj}:{min}/uevent"))
        .map_err(|e| format!("/sys/dev/block/{maj}:{min}/uevent: {e}"))?;
    let name = u
        .lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .ok_or_else(|| format!("no DEVNAME for block device {maj}:{min}"))?;
    Ok(PathBuf::from("/dev").join(name))
}

/// Page `p` of the file as the case wrote it.
fn page_bytes(seed: u64, p: u64) -> Vec<u8> {
    let mut b = vec![0u8; PAGE];
    pattern::fill(seed, p * PAGE as u64, &mut b);
    b
}

pub fn map_sync_mapping_is_accepted_and_faults_are_synchronous(ctx: &mut Ctx) -> CaseResult {
    const PAGES: usize = 16;
    let len = PAGES * PAGE;
    let fd = Fd::create(&ctx.file(""))?;
    // All holes: each store's fault allocates a block.
    fd.ftruncate(len as u64)?;
    let maps0 = stat_value(ctx, "sync_maps");
    let faults0 = stat_value(ctx, "sync_write_faults");
    let map = match map_sync(&fd, len) {
        Ok(m) => m,
        Err(e) => return Err(format!("mmap MAP_SHARED_VALIDATE|MAP_SYNC: {e}").into()),
    };
    let flags = smaps_flags(map.addr())?;
    ctx.check(flags.split_whitespace().any(|f| f == "sf"), || {
        format!("smaps VmFlags of the MAP_SYNC mapping lack 'sf': {flags}")
    });
    let insn = FlushInsn::detect();
    let seed = 0x5a5a_0001;
    let mut buf = vec![0u8; len];
    pattern::fill(seed, 0, &mut buf);
    map.copy_in(0, &buf);
    // SAFETY: the whole range lies in the live mapping.
    unsafe { sys::persist(insn, map.addr() as *const u8, len) };
    if let (Some(m0), Some(f0)) = (maps0, faults0) {
        let m1 = stat_value(ctx, "sync_maps").unwrap_or(0);
        let f1 = stat_value(ctx, "sync_write_faults").unwrap_or(0);
        ctx.check_eq(
            "sync_maps after one MAP_SYNC mmap",
            1,
            m1 as i128 - m0 as i128,
        );
        ctx.check_eq(
            "sync_write_faults after a store to each of 16 pages",
            PAGES as i128,
            f1 as i128 - f0 as i128,
        );
    } else if ctx.stats_dir().is_some() {
        ctx.fail("no sync_maps / sync_write_faults counters");
    }
    // The faults' allocations are visible (and, by MAP_SYNC, durable)
    // without any sync call.
    match fd.fiemap(0, u64::MAX) {
        Ok(ext) => {
            let pages = covered(ctx, "FIEMAP after the MAP_SYNC stores", &ext);
            let want: BTreeSet<u64> = (0..PAGES as u64).collect();
            ctx.check(pages == want, || {
                format!("FIEMAP after MAP_SYNC stores into 16 holes covers pages {pages:?}")
            });
        }
        Err(e) => ctx.fail(&format!("FIEMAP: {e}")),
    }
    map.unmap()?;
    let mut back = vec![0u8; len];
    fd.pread_exact(&mut back, 0)?;
    if let Some((at, e, g)) = pattern::first_mismatch(seed, 0, &back) {
        ctx.fail(&format!(
            "read back after MAP_SYNC stores: offset {at}: expected {e:#04x}, got {g:#04x}"
        ));
    }
    Ok(())
}

pub fn statx_reports_dax(ctx: &mut Ctx) -> CaseResult {
    let fd = Fd::create(&ctx.file(""))?;
    match fd.dax_attr() {
        Some(true) => Ok(()),
        Some(false) => Err("statx: STATX_ATTR_DAX is in the mask but not set"
            .to_string()
            .into()),
        None => Err("statx: STATX_ATTR_DAX not in stx_attributes_mask"
            .to_string()
            .into()),
    }
}

pub fn fiemap_maps_file_offsets_to_device_offsets(ctx: &mut Ctx) -> CaseResult {
    let path = ctx.file("");
    let fd = Fd::create(&path)?;
    let seed = 0xf1e0_0001;
    // Data pages, a hole between, one page behind an indirect block, and two
    // fallocated pages past EOF (KEEP_SIZE).
    let data: [u64; 5] = [0, 1, 2, 10, 300];
    for &p in &data {
        fd.pwrite_all(&page_bytes(seed, p), p * PAGE as u64)?;
    }
    fd.fallocate(
        libc::FALLOC_FL_KEEP_SIZE,
        305 * PAGE as u64,
        2 * PAGE as u64,
    )
    .map_err(|e| format!("fallocate KEEP_SIZE: {e}"))?;
    fd.fsync()?;
    let ext = fd.fiemap(0, u64::MAX).map_err(|e| format!("FIEMAP: {e}"))?;
    let pages = covered(ctx, "FIEMAP of the whole file", &ext);
    let mut want: BTreeSet<u64> = data.iter().copied().collect();
    want.insert(305);
    want.insert(306);
    ctx.check(pages == want, || {
        format!("FIEMAP covers pages {pages:?}, the file has {want:?} ({ext:x?})")
    });
    // A sub-range: only its allocated pages. ferrofs flags LAST only on the
    // file's last extent (more follow here); ext4 and xfs (iomap) flag the
    // last extent of the range, so that part is checked on ferrofs only
    // (counters on).
    let strict_last = ctx.stats_dir().is_some();
    let sub = fd
        .fiemap(PAGE as u64, 10 * PAGE as u64)
        .map_err(|e| format!("FIEMAP of pages 1..=10: {e}"))?;
    let mut sp = BTreeSet::new();
    for e in &sub {
        ctx.check(!strict_last || e.flags & FIEMAP_EXTENT_LAST == 0, || {
            format!("FIEMAP of pages 1..=10: {e:?} flagged LAST, page 300 follows")
        });
        for p in e.logical / PAGE as u64..(e.logical + e.len) / PAGE as u64 {
            sp.insert(p);
        }
    }
    let want_sub: BTreeSet<u64> = [1, 2, 10].into_iter().collect();
    ctx.check(sp == want_sub, || {
        format!("FIEMAP of pages 1..=10 covers {sp:?}")
    });
    // The physical offsets are the device's: read them there.
    let dev = device_of(&path)?;
    let dfd = Fd::open(&dev, libc::O_RDONLY | libc::O_DIRECT, 0)
        .map_err(|e| CaseError::Skip(format!("cannot open {} O_DIRECT: {e}", dev.display())))?;
    let buf = Anon::new(PAGE)?;
    for e in &ext {
        // ext4 and xfs leave fallocated blocks unwritten (their bytes on the
        // device are whatever was there); ferrofs zeroes them.
        if e.flags & FIEMAP_EXTENT_UNWRITTEN != 0 {
            continue;
        }
        for k in 0..e.len / PAGE as u64 {
            let p = e.logical / PAGE as u64 + k;
            let at = e.physical + k * PAGE as u64;
            // SAFETY: `buf` is a private page-aligned mapping of PAGE bytes.
            let n =
                unsafe { libc::pread(dfd.raw(), buf.addr() as *mut libc::c_void, PAGE, at as i64) };
            if n != PAGE as isize {
                ctx.fail(&format!(
                    "pread {} at {at}: {n} ({})",
                    dev.display(),
                    err_text(errno())
                ));
                continue;
            }
            let expect = if data.contains(&p) {
                page_bytes(seed, p)
            } else {
                vec![0u8; PAGE]
            };
            ctx.check(buf.bytes() == &expect[..], || {
                format!(
                    "page {p}: {} at FIEMAP's physical offset {at} does not hold the file's bytes",
                    dev.display()
                )
            });
        }
    }
    // An empty file has no extents.
    fd.ftruncate(0)?;
    let none = fd
        .fiemap(0, u64::MAX)
        .map_err(|e| format!("FIEMAP after truncate: {e}"))?;
    ctx.check(none.is_empty(), || {
        format!("FIEMAP of an empty file: {none:?}")
    });
    Ok(())
}

/// FIEMAP_EXTENT_UNWRITTEN.
const FIEMAP_EXTENT_UNWRITTEN: u32 = 0x800;

const SYS_IO_URING_SETUP: libc::c_long = 425;
const SYS_IO_URING_REGISTER: libc::c_long = 427;
const IORING_REGISTER_BUFFERS: libc::c_uint = 0;

/// io_uring_register(BUFFERS) of one buffer: 0 or the errno.
fn register_buffer(ring: libc::c_int, addr: usize, len: usize) -> i32 {
    let iov = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: `iov` is one valid iovec; the ring fd is ours.
    let r = unsafe {
        libc::syscall(
            SYS_IO_URING_REGISTER,
            ring,
            IORING_REGISTER_BUFFERS,
            &iov as *const libc::iovec,
            1 as libc::c_uint,
        )
    };
    if r == 0 {
        // Unregister (IORING_UNREGISTER_BUFFERS = 1).
        // SAFETY: plain syscall on our ring.
        unsafe {
            libc::syscall(
                SYS_IO_URING_REGISTER,
                ring,
                1 as libc::c_uint,
                0usize,
                0 as libc::c_uint,
            )
        };
        0
    } else {
        errno()
    }
}

pub fn longterm_pin_of_a_dax_mapping_is_refused(ctx: &mut Ctx) -> CaseResult {
    let mut params = [0u8; 120]; // struct io_uring_params
                                 // SAFETY: `params` is a zeroed struct io_uring_params.
    let ring = unsafe { libc::syscall(SYS_IO_URING_SETUP, 4 as libc::c_uint, params.as_mut_ptr()) };
    if ring < 0 {
        return Err(CaseError::Skip(format!(
            "io_uring_setup: {} (no io_uring in this kernel?)",
            err_text(errno())
        )));
    }
    let ring = ring as libc::c_int;
    let anon = Anon::new(PAGE)?;
    let a = register_buffer(ring, anon.addr(), PAGE);
    let fd = Fd::create(&ctx.file(""))?;
    fd.pwrite_all(&vec![7u8; PAGE], 0)?;
    let map = Map::shared_rw(&fd, PAGE)?;
    map.write(0, 1);
    let d = register_buffer(ring, map.addr(), PAGE);
    // SAFETY: our ring fd.
    unsafe { libc::close(ring) };
    if a != 0 {
        return Err(CaseError::Skip(format!(
            "registering anonymous memory as an io_uring buffer fails too: {}",
            err_text(a)
        )));
    }
    ctx.check(d == libc::EOPNOTSUPP, || {
        format!(
            "io_uring buffer registration (FOLL_LONGTERM) of a DAX mapping: expected EOPNOTSUPP, got {}",
            if d == 0 { "success".to_string() } else { err_text(d) }
        )
    });
    Ok(())
}
