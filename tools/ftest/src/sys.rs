//! Thin wrappers around the libc calls the tests make. Every failure becomes
//! a `String` naming the call, the file and errno.

use std::io;
use std::path::Path;

use libc::{c_int, c_void};

pub use ferrofs_usys::{
    cpath, last_err, persist, Extent, Fd, FlushInsn, FIEMAP_EXTENT_LAST, MAP_SHARED_VALIDATE,
    MAP_SYNC, PAGE,
};

/// A memory mapping of a file, unmapped on drop. Accesses go through raw
/// pointers (never Rust references), since the kernel may change the bytes
/// or revoke the pages (SIGBUS) at any time.
pub struct Map {
    ptr: *mut u8,
    len: usize,
}

impl Map {
    pub fn new(fd: &Fd, len: usize, prot: c_int, flags: c_int) -> Result<Map, String> {
        Map::new_at(fd, len, prot, flags, 0)
    }

    /// A mapping of `len` bytes of the file from `off` (page aligned).
    pub fn new_at(fd: &Fd, len: usize, prot: c_int, flags: c_int, off: u64) -> Result<Map, String> {
        // SAFETY: a fresh mapping chosen by the kernel (no MAP_FIXED), so no
        // existing memory is affected.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd.raw(), off as i64) };
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

/// Run the calling thread only on CPU `cpu` (`None`: on every CPU again).
/// An allocator shard belongs to a CPU: a case that must see what a
/// write does on each shard pins itself to each CPU in turn.
pub fn pin_to_cpu(cpu: Option<usize>) -> Result<(), String> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // Not available_parallelism: it reads this thread's affinity, which an
    // earlier pin narrowed.
    // SAFETY: sysconf has no memory effects.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }.clamp(1, 1024) as usize;
    for c in 0..n {
        if cpu.is_none_or(|k| k == c) {
            // SAFETY: `set` is a valid cpu_set_t and c < 1024, its size
            // in bits.
            unsafe { libc::CPU_SET(c, &mut set) };
        }
    }
    // SAFETY: pid 0 is the calling thread; `set` is valid for its size.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r != 0 {
        return Err(format!(
            "sched_setaffinity({cpu:?}): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}
