//! Thin wrappers around the libc calls the tests make. Every failure becomes
//! a `String` naming the call, the file and errno.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use libc::{c_int, c_void};

pub const PAGE: usize = 4096;

fn last_err() -> io::Error {
    io::Error::last_os_error()
}

fn cpath(p: &Path) -> Result<CString, String> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| format!("{}: path contains a NUL byte", p.display()))
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
}

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: `fd` is open and owned by this value alone.
        unsafe { libc::close(self.fd) };
    }
}

/// A memory mapping of a file, unmapped on drop. Accesses go through raw
/// pointers (never Rust references), since the kernel may change the bytes
/// or revoke the pages (SIGBUS) at any time.
pub struct Map {
    ptr: *mut u8,
    len: usize,
}

impl Map {
    pub fn new(fd: &Fd, len: usize, prot: c_int, flags: c_int) -> Result<Map, String> {
        // SAFETY: a fresh mapping chosen by the kernel (no MAP_FIXED), so no
        // existing memory is affected.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd.raw(), 0) };
        if p == libc::MAP_FAILED {
            return Err(format!("mmap {} ({len} bytes): {}", fd.name(), last_err()));
        }
        Ok(Map {
            ptr: p.cast::<u8>(),
            len,
        })
    }

    pub fn shared_rw(fd: &Fd, len: usize) -> Result<Map, String> {
        Map::new(
            fd,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
        )
    }

    pub fn shared_ro(fd: &Fd, len: usize) -> Result<Map, String> {
        Map::new(fd, len, libc::PROT_READ, libc::MAP_SHARED)
    }

    pub fn private_rw(fd: &Fd, len: usize) -> Result<Map, String> {
        Map::new(
            fd,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE,
        )
    }

    pub fn addr(&self) -> usize {
        self.ptr as usize
    }

    fn check(&self, off: usize, n: usize) {
        assert!(
            off.checked_add(n).is_some_and(|e| e <= self.len),
            "access {off}+{n} outside a mapping of {} bytes",
            self.len
        );
    }

    /// Loads one byte (a read fault if the page is not mapped).
    pub fn read(&self, off: usize) -> u8 {
        self.check(off, 1);
        // SAFETY: in bounds of a live mapping; a raw volatile load, no reference.
        unsafe { self.ptr.add(off).read_volatile() }
    }

    /// Stores one byte (a write fault or pfn_mkwrite if not mapped writable).
    pub fn write(&self, off: usize, v: u8) {
        self.check(off, 1);
        // SAFETY: in bounds of a live writable mapping; a raw volatile store.
        unsafe { self.ptr.add(off).write_volatile(v) }
    }

    pub fn copy_in(&self, off: usize, data: &[u8]) {
        self.check(off, data.len());
        // SAFETY: destination in bounds of a live writable mapping, which
        // cannot overlap `data` (a Rust-owned buffer).
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(off), data.len()) }
    }

    pub fn copy_out(&self, off: usize, buf: &mut [u8]) {
        self.check(off, buf.len());
        // SAFETY: source in bounds of a live mapping, not overlapping `buf`.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(off), buf.as_mut_ptr(), buf.len()) }
    }

    /// msync(2) of `len` bytes at `off` (page aligned).
    pub fn msync(&self, off: usize, len: usize, flags: c_int) -> Result<(), String> {
        self.check(off, len);
        // SAFETY: the range lies within this live mapping.
        if unsafe { libc::msync(self.ptr.add(off).cast::<c_void>(), len, flags) } != 0 {
            return Err(format!("msync {off}+{len}: {}", last_err()));
        }
        Ok(())
    }

    /// munmap(2), reporting its error (drop ignores it).
    pub fn unmap(self) -> Result<(), String> {
        let (p, len) = (self.ptr, self.len);
        std::mem::forget(self);
        // SAFETY: the mapping is ours and, `self` being forgotten, unused after.
        if unsafe { libc::munmap(p.cast::<c_void>(), len) } != 0 {
            return Err(format!("munmap: {}", last_err()));
        }
        Ok(())
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours and not used after drop.
        unsafe { libc::munmap(self.ptr.cast::<c_void>(), self.len) };
    }
}

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildEnd {
    Exited(i32),
    Signaled(i32),
}

impl std::fmt::Display for ChildEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            ChildEnd::Exited(c) => write!(f, "exited with status {c}"),
            ChildEnd::Signaled(s) => write!(f, "killed by {}", signal_name(s)),
        }
    }
}

pub fn signal_name(sig: c_int) -> String {
    let n = match sig {
        libc::SIGBUS => "SIGBUS",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGKILL => "SIGKILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGPIPE => "SIGPIPE",
        _ => return format!("signal {sig}"),
    };
    n.to_string()
}

pub fn decode_status(status: c_int) -> ChildEnd {
    if libc::WIFSIGNALED(status) {
        ChildEnd::Signaled(libc::WTERMSIG(status))
    } else {
        ChildEnd::Exited(libc::WEXITSTATUS(status))
    }
}

/// waitpid(2) for `pid`, retried on EINTR.
pub fn wait_child(pid: libc::pid_t) -> Result<ChildEnd, String> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid int to write to.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Ok(decode_status(status));
        }
        if r < 0 && last_err().kind() != io::ErrorKind::Interrupted {
            return Err(format!("waitpid {pid}: {}", last_err()));
        }
    }
}

/// No core files from children that die on purpose (SIGBUS tests).
pub fn no_core_dumps() {
    let lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit; failure only means cores stay enabled.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &lim) };
}

/// Loads (or stores, if `store`) one byte of `map` at `off` in a forked
/// child, which exits 0 if the access works; returns how it ended.
/// The caller must be single-threaded.
pub fn touch_in_child(map: &Map, off: usize, store: bool) -> Result<ChildEnd, String> {
    // SAFETY: the caller is single-threaded; the child only touches memory
    // and calls async-signal-safe functions before _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", last_err()));
    }
    if pid == 0 {
        no_core_dumps();
        if store {
            map.write(off, 0x5a);
        } else {
            map.read(off);
        }
        // SAFETY: leaving the child at once, without running any of the
        // parent's exit handlers or flushing its buffers twice.
        unsafe { libc::_exit(0) };
    }
    wait_child(pid)
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

/// `(major, minor)` of the device holding `path`.
pub fn dev_of(path: &Path) -> Result<(u32, u32), String> {
    let c = cpath(path)?;
    // SAFETY: all-zero is a valid `struct stat`.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` writable.
    if unsafe { libc::stat(c.as_ptr(), &mut st) } != 0 {
        return Err(format!("stat {}: {}", path.display(), last_err()));
    }
    Ok((libc::major(st.st_dev), libc::minor(st.st_dev)))
}
