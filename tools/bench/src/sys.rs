//! Thin wrappers around the libc calls the benchmarks make. Every failure
//! becomes a `String` naming the call, the file and errno.

use std::io;
use std::path::Path;
use std::time::Instant;

use libc::{c_int, c_void};

pub use ferrofs_usys::{cpath, last_err, Fd, PAGE};
pub const LINE: usize = 64;
pub const HUGE: usize = 2 << 20;

/// Seconds elapsed since `t`, as f64.
pub fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// A MAP_SHARED read-write mapping of a file, unmapped on drop. Accesses go
/// through raw pointers (never Rust references): the memory is the file.
pub struct Map {
    ptr: *mut u8,
    len: usize,
    /// The whole reservation to unmap (differs from `ptr`/`len` when the
    /// mapping was placed off 2 MiB alignment inside a larger reservation).
    base: *mut u8,
    base_len: usize,
}

impl Map {
    /// A MAP_SHARED_VALIDATE | MAP_SYNC mapping (fails with EOPNOTSUPP
    /// where the file system does not support it).
    pub fn shared_sync(fd: &Fd, len: usize) -> Result<Map, String> {
        Map::shared_flags(fd, len, 0x03 | 0x80000) // MAP_SHARED_VALIDATE | MAP_SYNC
    }

    /// Where the kernel places it: 2 MiB aligned when the length allows (on
    /// all three file systems), so PMD (huge) faults are possible.
    pub fn shared(fd: &Fd, len: usize) -> Result<Map, String> {
        Map::shared_flags(fd, len, libc::MAP_SHARED)
    }

    fn shared_flags(fd: &Fd, len: usize, flags: c_int) -> Result<Map, String> {
        // SAFETY: a fresh mapping chosen by the kernel (no MAP_FIXED), so no
        // existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd.raw(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!("mmap {} ({len} bytes): {}", fd.name(), last_err()));
        }
        let p = p.cast::<u8>();
        Ok(Map {
            ptr: p,
            len,
            base: p,
            base_len: len,
        })
    }

    /// Private anonymous memory with 4 KiB pages only (MADV_NOHUGEPAGE):
    /// the reference for case 13's fault scaling with no file system.
    pub fn anon_4k_only(len: usize) -> Result<Map, String> {
        let p = ferrofs_usys::mmap_anon(len)?;
        let m = Map {
            ptr: p,
            len,
            base: p,
            base_len: len,
        };
        m.advise(libc::MADV_NOHUGEPAGE)?;
        Ok(m)
    }

    /// madvise over the whole mapping (MADV_DONTNEED on anonymous memory
    /// frees its pages, so the next touch of each faults again).
    pub fn advise(&self, advice: c_int) -> Result<(), String> {
        // SAFETY: the range is this mapping, which `self` owns.
        if unsafe { libc::madvise(self.ptr.cast::<c_void>(), self.len, advice) } != 0 {
            return Err(format!("madvise({advice}): {}", last_err()));
        }
        Ok(())
    }

    /// At a virtual address 4 KiB past a 2 MiB boundary, so that file offset
    /// and address never agree modulo 2 MiB: only 4 KiB PTEs are possible.
    pub fn shared_4k_only(fd: &Fd, len: usize) -> Result<Map, String> {
        let base_len = len + 2 * HUGE;
        // SAFETY: a fresh anonymous reservation chosen by the kernel.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                base_len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(format!(
                "mmap reservation of {base_len} bytes: {}",
                last_err()
            ));
        }
        let base = base.cast::<u8>();
        let want = ((base as usize).next_multiple_of(HUGE) + PAGE) as *mut c_void;
        // SAFETY: `want..want+len` lies inside our own reservation, so
        // MAP_FIXED replaces only memory this function just reserved.
        let p = unsafe {
            libc::mmap(
                want,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd.raw(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            let e = last_err();
            // SAFETY: the reservation is ours and unused.
            unsafe { libc::munmap(base.cast::<c_void>(), base_len) };
            return Err(format!("mmap {} ({len} bytes, fixed): {e}", fd.name()));
        }
        Ok(Map {
            ptr: p.cast::<u8>(),
            len,
            base,
            base_len,
        })
    }

    pub fn addr(&self) -> usize {
        self.ptr as usize
    }

    /// Stores `v` to the first word of every cache line of page `page`:
    /// all 64 lines of the page become dirty.
    pub fn dirty_page(&self, page: usize, v: u64) {
        let off = page * PAGE;
        assert!(off + PAGE <= self.len, "page {page} outside the mapping");
        for l in (0..PAGE).step_by(LINE) {
            // SAFETY: in bounds of a live writable mapping, 8-byte aligned;
            // a raw volatile store, no reference.
            unsafe { self.ptr.add(off + l).cast::<u64>().write_volatile(v) }
        }
    }

    /// Stores one word to page `page` (a write fault if it is not mapped
    /// writable).
    pub fn store_word(&self, page: usize, v: u64) {
        let off = page * PAGE;
        assert!(off + 8 <= self.len, "page {page} outside the mapping");
        // SAFETY: as in `dirty_page`.
        unsafe { self.ptr.add(off).cast::<u64>().write_volatile(v) }
    }

    /// Loads one word of page `page` (a read fault if it is not mapped).
    pub fn load_word(&self, page: usize) -> u64 {
        let off = page * PAGE;
        assert!(off + 8 <= self.len, "page {page} outside the mapping");
        // SAFETY: in bounds of a live mapping; a raw volatile load.
        unsafe { self.ptr.add(off).cast::<u64>().read_volatile() }
    }

    /// msync(2) of `len` bytes at `off` (page aligned).
    pub fn msync(&self, off: usize, len: usize, flags: c_int) -> Result<(), String> {
        assert!(off + len <= self.len, "msync outside the mapping");
        // SAFETY: the range lies within this live mapping.
        if unsafe { libc::msync(self.ptr.add(off).cast::<c_void>(), len, flags) } != 0 {
            return Err(format!("msync {off}+{len}: {}", last_err()));
        }
        Ok(())
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: the mapping (and any reservation around it) is ours and not
        // used after drop.
        unsafe { libc::munmap(self.base.cast::<c_void>(), self.base_len) };
    }
}

pub fn unlink(path: &Path) -> Result<(), String> {
    let c = cpath(path)?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call.
    if unsafe { libc::unlink(c.as_ptr()) } != 0 {
        let e = last_err();
        if e.kind() != io::ErrorKind::NotFound {
            return Err(format!("unlink {}: {e}", path.display()));
        }
    }
    Ok(())
}

pub fn rename(from: &Path, to: &Path) -> Result<(), String> {
    let (a, b) = (cpath(from)?, cpath(to)?);
    // SAFETY: both are NUL-terminated strings that outlive the call.
    if unsafe { libc::rename(a.as_ptr(), b.as_ptr()) } != 0 {
        return Err(format!(
            "rename {} -> {}: {}",
            from.display(),
            to.display(),
            last_err()
        ));
    }
    Ok(())
}

/// Bytes available to an unprivileged user on the filesystem of `path`.
pub fn free_bytes(path: &Path) -> Result<u64, String> {
    let c = cpath(path)?;
    // SAFETY: all-zero is a valid `struct statvfs`.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` writable.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(format!("statvfs {}: {}", path.display(), last_err()));
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// `uname -r`.
pub fn kernel_release() -> String {
    // SAFETY: all-zero is a valid `struct utsname`.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is writable.
    if unsafe { libc::uname(&mut u) } != 0 {
        return String::from("unknown");
    }
    let bytes: Vec<u8> = u
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The hypervisor's CPUID vendor string ("TCGTCGTCGTCG" under QEMU TCG,
/// "KVMKVMKVM" under KVM), or None on bare metal.
pub fn hypervisor_vendor() -> Option<String> {
    if cpuid(1, 0).ecx & (1 << 31) == 0 {
        return None;
    }
    // Leaf 0x40000000 is reserved for hypervisors.
    let h = cpuid(0x4000_0000, 0);
    let mut v = Vec::with_capacity(12);
    for r in [h.ebx, h.ecx, h.edx] {
        v.extend_from_slice(&r.to_le_bytes());
    }
    let s: String = String::from_utf8_lossy(&v)
        .trim_end_matches('\0')
        .to_string();
    Some(s)
}

/// CPUID `leaf`.`sub`. The intrinsic is safe in newer Rust and unsafe in
/// older, hence the allow.
#[allow(unused_unsafe)]
pub fn cpuid(leaf: u32, sub: u32) -> std::arch::x86_64::CpuidResult {
    // SAFETY: CPUID exists on every x86_64 CPU; an unknown leaf returns
    // zeros or the highest basic leaf's values, never faults.
    unsafe { std::arch::x86_64::__cpuid_count(leaf, sub) }
}
