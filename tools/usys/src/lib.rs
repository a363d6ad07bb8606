//! File descriptors for the ferrofs test and benchmark programs: thin
//! wrappers around libc calls, every failure a `String` naming the call, the
//! file and errno. Shared by ferrotest (tools/ftest) and ferrobench
//! (tools/bench).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use libc::{c_int, c_void};

pub const PAGE: usize = 4096;

/// The calling thread's errno as an `io::Error`.
pub fn last_err() -> io::Error {
    io::Error::last_os_error()
}

/// `p` as a C string.
pub fn cpath(p: &Path) -> Result<CString, String> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| format!("{}: path contains a NUL byte", p.display()))
}

/// A fresh private anonymous read-write mapping of `len` bytes, chosen by
/// the kernel; the caller owns it and unmaps it.
pub fn mmap_anon(len: usize) -> Result<*mut u8, String> {
    // SAFETY: no MAP_FIXED, so no existing memory is affected.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(format!("mmap of {len} anonymous bytes: {}", last_err()));
    }
    Ok(p.cast::<u8>())
}

/// An open file descriptor, closed on drop.
pub struct Fd {
    fd: c_int,
    name: String,
}

impl Fd {
    pub fn open(path: &Path, flags: c_int, mode: libc::mode_t) -> Result<Fd, String> {
        let c = cpath(path)?;
        // SAFETY: `c` is a NUL-terminated string that outlives the call.
        let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint) };
        if fd < 0 {
            return Err(format!("open {}: {}", path.display(), last_err()));
        }
        Ok(Fd {
            fd,
            name: path.display().to_string(),
        })
    }

    /// Creates (or truncates to 0) a read-write file.
    pub fn create(path: &Path) -> Result<Fd, String> {
        Fd::open(path, libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC, 0o644)
    }

    pub fn open_rw(path: &Path) -> Result<Fd, String> {
        Fd::open(path, libc::O_RDWR, 0)
    }

    pub fn open_ro(path: &Path) -> Result<Fd, String> {
        Fd::open(path, libc::O_RDONLY, 0)
    }

    pub fn raw(&self) -> c_int {
        self.fd
    }

    fn err(&self, what: &str) -> String {
        format!("{what} {}: {}", self.name, last_err())
    }

    /// pread(2), retried on EINTR; may return less than asked.
    pub fn pread(&self, buf: &mut [u8], off: u64) -> Result<usize, String> {
        loop {
            // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
            let n = unsafe {
                libc::pread(
                    self.fd,
                    buf.as_mut_ptr().cast::<c_void>(),
                    buf.len(),
                    off as libc::off_t,
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            if last_err().kind() != io::ErrorKind::Interrupted {
                return Err(self.err(&format!("pread at {off}")));
            }
        }
    }

    /// Reads `buf.len()` bytes at `off` with pread(2); a short file is an error.
    pub fn pread_exact(&self, buf: &mut [u8], off: u64) -> Result<(), String> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.pread(&mut buf[done..], off + done as u64)?;
            if n == 0 {
                return Err(format!(
                    "pread {}: end of file at {}, wanted {} bytes at {off}",
                    self.name,
                    off + done as u64,
                    buf.len()
                ));
            }
            done += n;
        }
        Ok(())
    }

    pub fn pwrite_all(&self, buf: &[u8], off: u64) -> Result<(), String> {
        let mut done = 0;
        while done < buf.len() {
            let rest = &buf[done..];
            // SAFETY: `rest` is valid for reads of `rest.len()` bytes.
            let n = unsafe {
                libc::pwrite(
                    self.fd,
                    rest.as_ptr().cast::<c_void>(),
                    rest.len(),
                    (off + done as u64) as libc::off_t,
                )
            };
            if n < 0 {
                if last_err().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(self.err(&format!("pwrite at {}", off + done as u64)));
            }
            if n == 0 {
                return Err(format!("pwrite {}: wrote nothing", self.name));
            }
            done += n as usize;
        }
        Ok(())
    }

    /// write(2) at the file offset until all of `buf` is written.
    pub fn write_all(&self, buf: &[u8]) -> Result<(), String> {
        let mut done = 0;
        while done < buf.len() {
            let rest = &buf[done..];
            // SAFETY: `rest` is valid for reads of `rest.len()` bytes.
            let n = unsafe { libc::write(self.fd, rest.as_ptr().cast::<c_void>(), rest.len()) };
            if n < 0 {
                if last_err().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(self.err("write"));
            }
            if n == 0 {
                return Err(format!("write {}: wrote nothing", self.name));
            }
            done += n as usize;
        }
        Ok(())
    }

    /// read(2) at the file offset until `buf` is full or end of file;
    /// returns the bytes read.
    pub fn read_full(&self, buf: &mut [u8]) -> Result<usize, String> {
        let mut done = 0;
        while done < buf.len() {
            let rest = &mut buf[done..];
            // SAFETY: `rest` is valid for writes of `rest.len()` bytes.
            let n = unsafe { libc::read(self.fd, rest.as_mut_ptr().cast::<c_void>(), rest.len()) };
            if n < 0 {
                if last_err().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(self.err("read"));
            }
            if n == 0 {
                break;
            }
            done += n as usize;
        }
        Ok(done)
    }

    pub fn fsync(&self) -> Result<(), String> {
        // SAFETY: plain syscall on a descriptor we own.
        if unsafe { libc::fsync(self.fd) } != 0 {
            return Err(self.err("fsync"));
        }
        Ok(())
    }

    pub fn fdatasync(&self) -> Result<(), String> {
        // SAFETY: plain syscall on a descriptor we own.
        if unsafe { libc::fdatasync(self.fd) } != 0 {
            return Err(self.err("fdatasync"));
        }
        Ok(())
    }

    pub fn ftruncate(&self, len: u64) -> Result<(), String> {
        // SAFETY: plain syscall on a descriptor we own.
        if unsafe { libc::ftruncate(self.fd, len as libc::off_t) } != 0 {
            return Err(self.err(&format!("ftruncate to {len}")));
        }
        Ok(())
    }

    /// fallocate(2); the raw error, so that callers can tell EOPNOTSUPP.
    pub fn fallocate(&self, mode: c_int, off: u64, len: u64) -> Result<(), io::Error> {
        // SAFETY: plain syscall on a descriptor we own.
        let r = unsafe { libc::fallocate(self.fd, mode, off as libc::off_t, len as libc::off_t) };
        if r != 0 {
            return Err(last_err());
        }
        Ok(())
    }

    pub fn stat(&self) -> Result<libc::stat, String> {
        // SAFETY: all-zero is a valid `struct stat` (plain integers).
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `st` is a valid, writable `struct stat`.
        if unsafe { libc::fstat(self.fd, &mut st) } != 0 {
            return Err(self.err("fstat"));
        }
        Ok(st)
    }

    pub fn size(&self) -> Result<u64, String> {
        Ok(self.stat()?.st_size as u64)
    }

    pub fn lseek0(&self) -> Result<(), String> {
        // SAFETY: plain syscall on a descriptor we own.
        if unsafe { libc::lseek(self.fd, 0, libc::SEEK_SET) } < 0 {
            return Err(self.err("lseek"));
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// STATX_ATTR_DAX of the open file, if the filesystem reports it.
    pub fn dax_attr(&self) -> Option<bool> {
        // SAFETY: all-zero is a valid `struct statx` (plain integers).
        let mut st: libc::statx = unsafe { std::mem::zeroed() };
        let empty = c"";
        // SAFETY: `empty` is NUL-terminated, `st` writable; AT_EMPTY_PATH
        // makes statx describe the descriptor itself.
        let r = unsafe {
            libc::statx(
                self.fd,
                empty.as_ptr(),
                libc::AT_EMPTY_PATH,
                libc::STATX_BASIC_STATS,
                &mut st,
            )
        };
        const ATTR_DAX: u64 = 0x0020_0000; // STATX_ATTR_DAX
        if r != 0 || st.stx_attributes_mask & ATTR_DAX == 0 {
            return None;
        }
        Some(st.stx_attributes & ATTR_DAX != 0)
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: `fd` is open and owned by this value alone.
        unsafe { libc::close(self.fd) };
    }
}

/// The cache-line write-back instruction user space uses to persist stores
/// made through a MAP_SYNC mapping (as PMDK's libpmem chooses it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushInsn {
    Clwb,
    Clflushopt,
    Clflush,
}

impl FlushInsn {
    /// From CPUID leaf 7 (EBX bit 24 clwb, bit 23 clflushopt).
    pub fn detect() -> FlushInsn {
        // Leaf 7 exists on every CPU these guests run on (-cpu max).
        let r = std::arch::x86_64::__cpuid_count(7, 0);
        if r.ebx & (1 << 24) != 0 {
            FlushInsn::Clwb
        } else if r.ebx & (1 << 23) != 0 {
            FlushInsn::Clflushopt
        } else {
            FlushInsn::Clflush
        }
    }
}

/// Write back every cache line of `addr..addr+len` with `insn`, then one
/// sfence: what `pmem_persist` does for a MAP_SYNC mapping. No system call.
///
/// # Safety
/// `addr..addr+len` must be mapped (a flush of an unmapped address faults).
pub unsafe fn persist(insn: FlushInsn, addr: *const u8, len: usize) {
    if len == 0 {
        return;
    }
    let start = addr as usize & !63;
    let end = addr as usize + len;
    let mut p = start;
    while p < end {
        // SAFETY: `p` lies in a line of the mapped range (the caller's
        // promise); the flush instructions only write back or evict it.
        unsafe {
            match insn {
                FlushInsn::Clwb => std::arch::asm!("clwb [{0}]", in(reg) p, options(nostack)),
                FlushInsn::Clflushopt => {
                    std::arch::asm!("clflushopt [{0}]", in(reg) p, options(nostack))
                }
                FlushInsn::Clflush => std::arch::asm!("clflush [{0}]", in(reg) p, options(nostack)),
            }
        }
        p += 64;
    }
    // SAFETY: a fence has no memory operands.
    unsafe { std::arch::asm!("sfence", options(nostack)) };
}

/// MAP_SYNC (linux/mman.h), and the MAP_SHARED_VALIDATE it needs.
pub const MAP_SYNC: c_int = 0x80000;
pub const MAP_SHARED_VALIDATE: c_int = 0x03;

/// One FIEMAP extent, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub logical: u64,
    pub physical: u64,
    pub len: u64,
    pub flags: u32,
}

pub const FIEMAP_EXTENT_LAST: u32 = 1;
const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;

impl Fd {
    /// FS_IOC_FIEMAP of `start..start+len`: every extent, fetched in rounds
    /// of 64. Err(errno) when the ioctl fails.
    pub fn fiemap(&self, start: u64, len: u64) -> Result<Vec<Extent>, io::Error> {
        const N: usize = 64;
        // struct fiemap (32 bytes) followed by N struct fiemap_extent (56).
        #[repr(C)]
        struct Req {
            start: u64,
            length: u64,
            flags: u32,
            mapped: u32,
            count: u32,
            reserved: u32,
            ext: [[u64; 7]; N],
        }
        let mut out = Vec::new();
        let mut at = start;
        let end = start.saturating_add(len);
        loop {
            let mut r = Req {
                start: at,
                length: end - at,
                flags: 0,
                mapped: 0,
                count: N as u32,
                reserved: 0,
                ext: [[0; 7]; N],
            };
            // SAFETY: `r` is a struct fiemap with room for `count` extents.
            if unsafe { libc::ioctl(self.fd, FS_IOC_FIEMAP, &mut r as *mut Req) } != 0 {
                return Err(last_err());
            }
            let got = (r.mapped as usize).min(N);
            for e in &r.ext[..got] {
                // fe_logical, fe_physical, fe_length, 2 reserved, then
                // fe_flags (u32) and padding.
                out.push(Extent {
                    logical: e[0],
                    physical: e[1],
                    len: e[2],
                    flags: e[5] as u32,
                });
            }
            match out.last() {
                Some(l) if got == N && l.flags & FIEMAP_EXTENT_LAST == 0 => {
                    at = l.logical + l.len;
                    if at >= end {
                        return Ok(out);
                    }
                }
                _ => return Ok(out),
            }
        }
    }
}
