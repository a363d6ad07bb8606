//! get_user_pages (gup) on shared DAX mappings. Everything here needs the
//! kernel to find the page behind a user address of a MAP_SHARED mapping of
//! the file, and to hold it (pin it) while it works on it:
//!
//! - shared futexes, whose key is the file and offset of the word (the same
//!   word through two mappings at different addresses is one futex), and
//!   robust process-shared pthread mutexes built on them;
//! - /proc/PID/mem and process_vm_readv/writev (access_remote_vm, gup);
//! - O_DIRECT I/O between a block device and a mapping (the bio holds pinned
//!   pages of the mapping while the device copies);
//! - truncate while such an O_DIRECT read is in flight: the file's blocks
//!   under the pinned pages must not be freed (and reused by another file)
//!   before the I/O lets go of them.
//!
//! The O_DIRECT cases use a whole block device, `FERROTEST_ODIRECT_DEV`
//! (default /dev/pmem1), opened O_EXCL (so never a mounted one); they skip
//! if it cannot be opened that way. They overwrite its first 10 MiB.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use libc::{c_int, c_void};

use crate::counters::{Counters, Field};
use crate::pattern::Rng;
use crate::runner::{CaseError, CaseResult, Ctx};
use crate::sys::{self, last_err, ChildEnd, Fd, Map, PAGE};

// ---------------------------------------------------------------------------
// Helpers

/// The symbolic name of an errno value.
pub fn errno_name(e: i32) -> String {
    let n = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::ENOTBLK => "ENOTBLK",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::EDEADLK => "EDEADLK",
        libc::ENOSYS => "ENOSYS",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EOWNERDEAD => "EOWNERDEAD",
        libc::ENOTRECOVERABLE => "ENOTRECOVERABLE",
        0 => "0",
        _ => return format!("errno {e}"),
    };
    n.to_string()
}

/// `EFAULT (Bad address)`.
pub(crate) fn err_text(e: i32) -> String {
    format!("{} ({})", errno_name(e), io::Error::from_raw_os_error(e))
}

fn errno() -> i32 {
    last_err().raw_os_error().unwrap_or(0)
}

use crate::coherence::secs_env;

pub(crate) fn load_u32(addr: usize) -> u32 {
    // SAFETY: callers pass a 4-byte aligned address inside a live mapping;
    // a raw volatile load, no Rust reference into memory others change.
    unsafe { (addr as *const u32).read_volatile() }
}

pub(crate) fn store_u32(addr: usize, v: u32) {
    // SAFETY: as load_u32, into a live shared writable mapping.
    unsafe { (addr as *mut u32).write_volatile(v) }
}

fn load_u64(addr: usize) -> u64 {
    // SAFETY: as load_u32, 8-byte aligned.
    unsafe { (addr as *const u64).read_volatile() }
}

fn store_u64(addr: usize, v: u64) {
    // SAFETY: as store_u32, 8-byte aligned.
    unsafe { (addr as *mut u64).write_volatile(v) }
}

/// futex(2) on the word at `addr` (a shared futex: no FUTEX_PRIVATE_FLAG);
/// `timeout` is relative (FUTEX_WAIT). Returns the result or errno.
pub(crate) fn futex(
    addr: usize,
    op: c_int,
    val: u32,
    timeout: Option<Duration>,
) -> Result<i64, i32> {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let tp = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: futex only reads the word at `addr` (a live mapping, checked by
    // the kernel anyway) and the timespec, which outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            addr as *mut u32,
            op,
            val,
            tp,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r as i64)
    }
}

/// pread(2) into raw memory (a mapping), retried on EINTR; Err is errno.
fn pread_raw(fd: c_int, addr: usize, len: usize, off: u64) -> Result<usize, i32> {
    loop {
        // SAFETY: the kernel writes at most `len` bytes at `addr`, memory the
        // caller owns (a live writable mapping) and reads back with volatile
        // loads or after the call only.
        let n = unsafe { libc::pread(fd, addr as *mut c_void, len, off as libc::off_t) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = errno();
        if e != libc::EINTR {
            return Err(e);
        }
    }
}

/// pwrite(2) from raw memory (a mapping), retried on EINTR; Err is errno.
fn pwrite_raw(fd: c_int, addr: usize, len: usize, off: u64) -> Result<usize, i32> {
    loop {
        // SAFETY: the kernel reads at most `len` bytes at `addr`, a live
        // mapping of the caller.
        let n = unsafe { libc::pwrite(fd, addr as *const c_void, len, off as libc::off_t) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = errno();
        if e != libc::EINTR {
            return Err(e);
        }
    }
}

/// Page-aligned anonymous memory (an O_DIRECT buffer), unmapped on drop.
pub(crate) struct Anon {
    ptr: *mut u8,
    len: usize,
}

impl Anon {
    pub(crate) fn new(len: usize) -> Result<Anon, String> {
        Ok(Anon {
            ptr: ferrofs_usys::mmap_anon(len)?,
            len,
        })
    }

    pub(crate) fn addr(&self) -> usize {
        self.ptr as usize
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: our private mapping of `len` bytes; only our own syscalls
        // write to it, and not while this borrow lives.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as bytes(), exclusively borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Anon {
    fn drop(&mut self) {
        // SAFETY: our mapping, not used after drop.
        unsafe { libc::munmap(self.ptr.cast::<c_void>(), self.len) };
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe2: {}", last_err()));
    }
    // SAFETY: two fresh descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn write_fd(fd: &OwnedFd, mut buf: &[u8]) -> Result<(), String> {
    while !buf.is_empty() {
        // SAFETY: `buf` is valid for reads of its length.
        let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            return Err(format!("write to a pipe: {}", last_err()));
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes from a pipe within `limit`.
fn read_fd_timeout(fd: &OwnedFd, buf: &mut [u8], limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut got = 0;
    while got < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "nothing came through the pipe within {} s",
                limit.as_secs()
            ));
        }
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, left.as_millis().clamp(1, 60_000) as c_int) } <= 0 {
            continue;
        }
        let rest = &mut buf[got..];
        // SAFETY: `rest` is valid for writes of its length.
        let n = unsafe { libc::read(fd.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len()) };
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        if n < 0 {
            return Err(format!("read from a pipe: {}", last_err()));
        }
        if n == 0 {
            return Err("the other end closed the pipe".into());
        }
        got += n as usize;
    }
    Ok(())
}

/// Everything left in a pipe whose writers are gone.
fn read_to_end(fd: &OwnedFd) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A forked child running a closure; what it says comes back through a pipe.
struct Child {
    pid: libc::pid_t,
    msg: OwnedFd,
    reaped: bool,
}

/// Forks; the child runs `f` and exits 0 (its Ok text, if any, goes back to
/// the parent), or 1 with its error; whatever it writes to stderr comes back
/// too. The caller must be single-threaded.
fn spawn(f: impl FnOnce() -> Result<String, String>) -> Result<Child, String> {
    let (rd, wr) = pipe()?;
    // SAFETY: the case process is single-threaded here; the child runs `f`
    // and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", last_err()));
    }
    if pid == 0 {
        drop(rd);
        sys::no_core_dumps();
        // Its stderr goes to the parent with its message too (glibc's
        // "The futex facility returned an unexpected error code." before
        // it aborts, for one).
        // SAFETY: plain syscall on descriptors the child owns.
        unsafe { libc::dup2(wr.as_raw_fd(), 2) };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let (code, text) = match r {
            Ok(Ok(t)) => (0, t),
            Ok(Err(e)) => (1, e),
            Err(_) => (2, "panicked".to_string()),
        };
        let _ = write_fd(&wr, text.as_bytes());
        // SAFETY: leaving the child without the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    drop(wr);
    Ok(Child {
        pid,
        msg: rd,
        reaped: false,
    })
}

impl Child {
    /// The child's end if it has ended (reaping it), without blocking.
    fn try_wait(&mut self) -> Result<Option<ChildEnd>, String> {
        let mut status = 0;
        // SAFETY: `status` is a valid int to write to.
        let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
        if r == self.pid {
            self.reaped = true;
            return Ok(Some(sys::decode_status(status)));
        }
        if r < 0 && errno() != libc::EINTR {
            return Err(format!("waitpid {}: {}", self.pid, last_err()));
        }
        Ok(None)
    }

    /// Waits up to `limit` (then SIGKILLs it); Ok(its text) if it exited 0,
    /// Err(`what` + how it ended + its message) otherwise.
    fn finish(mut self, what: &str, limit: Duration) -> Result<String, String> {
        let deadline = Instant::now() + limit;
        let mut killed = false;
        let end = loop {
            if let Some(end) = self.try_wait()? {
                break end;
            }
            if !killed && Instant::now() >= deadline {
                // SAFETY: our child, not yet reaped.
                unsafe { libc::kill(self.pid, libc::SIGKILL) };
                killed = true;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        self.end(what, end, killed, limit)
    }

    fn end(
        &self,
        what: &str,
        end: ChildEnd,
        killed: bool,
        limit: Duration,
    ) -> Result<String, String> {
        let text = read_to_end(&self.msg).trim_end().replace('\n', "; ");
        match end {
            ChildEnd::Exited(0) => Ok(text),
            _ if killed => Err(format!(
                "{what}: still running after {} s, killed{}",
                limit.as_secs(),
                if text.is_empty() {
                    String::new()
                } else {
                    format!(": {text}")
                }
            )),
            ChildEnd::Exited(1) => Err(format!("{what}: {text}")),
            end => Err(format!(
                "{what}: {end}{}",
                if text.is_empty() {
                    String::new()
                } else {
                    format!(": {text}")
                }
            )),
        }
    }

    fn kill(&self) {
        if !self.reaped {
            // SAFETY: our child, not yet reaped.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill();
            let _ = sys::wait_child(self.pid);
        }
    }
}

/// Waits until `child` sleeps in the kernel (its wchan names a futex
/// function, or, where wchan says nothing, its state is S for 200 ms).
/// Ok(Some(end)) if it ended first.
fn wait_asleep(child: &mut Child, limit: Duration) -> Result<Option<ChildEnd>, String> {
    let deadline = Instant::now() + limit;
    let mut s_since: Option<Instant> = None;
    while Instant::now() < deadline {
        if let Some(end) = child.try_wait()? {
            return Ok(Some(end));
        }
        let wchan =
            std::fs::read_to_string(format!("/proc/{}/wchan", child.pid)).unwrap_or_default();
        if wchan.contains("futex") {
            return Ok(None);
        }
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.pid)).unwrap_or_default();
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].trim_start().chars().next());
        let uninformative = wchan.is_empty() || wchan == "0";
        if state == Some('S') && uninformative {
            let t = *s_since.get_or_insert_with(Instant::now);
            if t.elapsed() >= Duration::from_millis(200) {
                return Ok(None);
            }
        } else {
            s_since = None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(format!(
        "the child did not fall asleep within {} s",
        limit.as_secs()
    ))
}

/// A case's counter snapshot pair, `entries_flushed` after minus before.
fn flushed(a: &Option<Counters>, b: &Option<Counters>) -> Option<i128> {
    match (a, b) {
        (Some(a), Some(b)) => {
            Some(b.get(Field::EntriesFlushed) as i128 - a.get(Field::EntriesFlushed) as i128)
        }
        _ => None,
    }
}

/// fsync must flush at least `min` entries (stores through gup-pinned pages
/// reached the file through marked entries), and a second fsync none.
fn check_fsync_flushes(ctx: &mut Ctx, fd: &Fd, what: &str, min: i128) -> CaseResult {
    let s0 = ctx.snap()?;
    fd.fsync()?;
    let s1 = ctx.snap()?;
    fd.fsync()?;
    let s2 = ctx.snap()?;
    if let Some(d) = flushed(&s0, &s1) {
        if d < min {
            ctx.fail(&format!(
                "fsync after {what}: expected entries_flushed to rise by at least {min} \
                 (every page the kernel stored to through the pinned mapping), it rose by {d}"
            ));
        }
    }
    if let Some(d) = flushed(&s1, &s2) {
        ctx.check_eq(
            &format!("entries_flushed by a second fsync after {what}"),
            0,
            d,
        );
    }
    Ok(())
}

/// The first differing byte of two buffers, as a message.
fn first_diff(what: &str, want: &[u8], got: &[u8]) -> Option<String> {
    (0..want.len().min(got.len()))
        .find(|&i| want[i] != got[i])
        .map(|i| {
            format!(
                "{what}: offset {i} (page {}): expected {:#04x}, got {:#04x}{}",
                i / PAGE,
                want[i],
                got[i],
                if got[i / PAGE * PAGE..(i / PAGE * PAGE + PAGE).min(got.len())]
                    .iter()
                    .all(|&b| b == 0)
                {
                    " (that page reads as zeros)"
                } else {
                    ""
                }
            )
        })
}

/// The word of a recognizable pattern the block device region `region`
/// holds at word `w`: its top three bytes are "PIN".
fn dev_word(region: u64, w: u64, gen: u64) -> u64 {
    0x5049_4e00_0000_0000 | (region & 0xff) << 32 | (gen & 0xff) << 24 | (w & 0xff_ffff)
}

fn is_dev_word(w: u64) -> bool {
    w >> 40 == 0x50_494e
}

fn fill_words(buf: &mut [u8], f: impl Fn(u64) -> u64) {
    for (i, c) in buf.chunks_exact_mut(8).enumerate() {
        c.copy_from_slice(&f(i as u64).to_le_bytes());
    }
}

/// The O_DIRECT block device: FERROTEST_ODIRECT_DEV or /dev/pmem1.
fn odirect_dev_path() -> PathBuf {
    std::env::var_os("FERROTEST_ODIRECT_DEV")
        .filter(|s| !s.is_empty())
        .map_or_else(|| PathBuf::from("/dev/pmem1"), PathBuf::from)
}

/// Bytes of the device the cases use (the first 10 MiB).
const DEV_NEEDS: u64 = 10 << 20;

/// The device, opened O_RDWR | O_DIRECT | O_EXCL (O_EXCL on a block device:
/// fails with EBUSY if it is mounted), or a skip saying why not.
fn open_odirect_dev() -> Result<Fd, CaseError> {
    let p = odirect_dev_path();
    let skip = |why: String| {
        CaseError::Skip(format!(
            "O_DIRECT device {}: {why} (set FERROTEST_ODIRECT_DEV to an unused block device)",
            p.display()
        ))
    };
    let fd = Fd::open(&p, libc::O_RDWR | libc::O_DIRECT | libc::O_EXCL, 0)
        .map_err(|e| skip(format!("cannot open it O_RDWR|O_DIRECT|O_EXCL: {e}")))?;
    let st = fd.stat()?;
    if st.st_mode & libc::S_IFMT != libc::S_IFBLK {
        return Err(skip("not a block device".into()));
    }
    let mut size = 0u64;
    // BLKGETSIZE64 = _IOR(0x12, 114, size_t)
    const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
    // SAFETY: BLKGETSIZE64 writes one u64 to `size`.
    if unsafe { libc::ioctl(fd.raw(), BLKGETSIZE64, &mut size) } != 0 {
        return Err(skip(format!("BLKGETSIZE64: {}", last_err())));
    }
    if size < DEV_NEEDS {
        return Err(skip(format!("{size} bytes, need {DEV_NEEDS}")));
    }
    Ok(fd)
}

/// O_DIRECT write of a whole buffer to the device (a plain, aligned one).
fn dev_write(dev: &Fd, buf: &Anon, off: u64) -> Result<(), String> {
    match pwrite_raw(dev.raw(), buf.addr(), buf.len, off) {
        Ok(n) if n == buf.len => Ok(()),
        Ok(n) => Err(format!(
            "O_DIRECT pwrite of {} bytes to {} at {off}: wrote {n}",
            buf.len,
            dev.name()
        )),
        Err(e) => Err(format!(
            "O_DIRECT pwrite to {} at {off} from a plain buffer: {}",
            dev.name(),
            err_text(e)
        )),
    }
}

fn dev_read(dev: &Fd, buf: &mut Anon, off: u64) -> Result<(), String> {
    match pread_raw(dev.raw(), buf.addr(), buf.len, off) {
        Ok(n) if n == buf.len => Ok(()),
        Ok(n) => Err(format!(
            "O_DIRECT pread of {} bytes from {} at {off}: read {n}",
            buf.len,
            dev.name()
        )),
        Err(e) => Err(format!(
            "O_DIRECT pread from {} at {off} into a plain buffer: {}",
            dev.name(),
            err_text(e)
        )),
    }
}

use crate::coherence::Errors;

// ---------------------------------------------------------------------------
// Shared futexes

/// The futex word: page 1 of a 2-page file.
const FUTEX_OFF: usize = PAGE + 64;

fn futex_file(ctx: &Ctx, value: u32) -> Result<(Fd, Map), CaseError> {
    let fd = Fd::create(&ctx.file(""))?;
    fd.pwrite_all(&vec![0u8; 2 * PAGE], 0)?;
    fd.pwrite_all(&value.to_le_bytes(), FUTEX_OFF as u64)?;
    let map = Map::shared_rw(&fd, 2 * PAGE)?;
    Ok((fd, map))
}

/// A child maps the file itself (so at another address than the parent's
/// mapping) and sleeps in FUTEX_WAIT on a word of it; the parent stores a
/// new value through its own mapping and FUTEX_WAKEs that address. The key
/// of a shared futex is the file and offset, so the wake must find the
/// child: FUTEX_WAKE returns 1 and the child's FUTEX_WAIT returns 0.
pub fn shared_futex_wait_wake_between_processes(ctx: &mut Ctx) -> CaseResult {
    let (_fd, map) = futex_file(ctx, 1)?;
    let parent_addr = map.addr() + FUTEX_OFF;
    if load_u32(parent_addr) != 1 {
        return Err(CaseError::Fail(format!(
            "the futex word reads {:#x} through the mapping, expected 1 (pwrite)",
            load_u32(parent_addr)
        )));
    }
    let path = ctx.file("");
    let parent_map = map.addr();
    let mut child = spawn(move || {
        let f = Fd::open_rw(&path)?;
        let own = Map::shared_rw(&f, 2 * PAGE)?;
        if own.addr() == parent_map {
            return Err("the child's own mapping landed at the parent's address".into());
        }
        let a = own.addr() + FUTEX_OFF;
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut woken = 0;
        loop {
            let v = load_u32(a);
            if v != 1 {
                return if v == 2 {
                    Ok(format!("woken {woken} time(s)"))
                } else {
                    Err(format!("the futex word reads {v:#x}, expected 1 or 2"))
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match futex(a, libc::FUTEX_WAIT, 1, Some(left)) {
                Ok(_) => woken += 1, // recheck the word (a spurious wake-up is allowed)
                Err(libc::EINTR) | Err(libc::EAGAIN) => {}
                Err(libc::ETIMEDOUT) => {
                    return Err(format!(
                        "FUTEX_WAIT (shared) through its own mapping at {a:#x} timed out \
                         after 20 s: the parent's FUTEX_WAKE through its mapping at \
                         {:#x} did not reach it",
                        parent_map + FUTEX_OFF
                    ))
                }
                Err(e) => {
                    return Err(format!(
                        "FUTEX_WAIT (shared, value 1, 20 s) through its own mapping: \
                         expected 0 (woken), got {}",
                        err_text(e)
                    ))
                }
            }
        }
    })?;
    let early = wait_asleep(&mut child, Duration::from_secs(10));
    store_u32(parent_addr, 2);
    // A few tries: a child that looked asleep may not be in FUTEX_WAIT yet.
    let mut woke = futex(parent_addr, libc::FUTEX_WAKE, 1, None);
    for _ in 0..100 {
        if !matches!(woke, Ok(0)) || child.reaped {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        woke = futex(parent_addr, libc::FUTEX_WAKE, 1, None);
    }
    match woke {
        Ok(1) => {}
        Ok(n) => ctx.fail(&format!(
            "FUTEX_WAKE (shared) through the parent's mapping returned {n}, expected 1 \
             (the child asleep on the same file word through its own mapping)"
        )),
        Err(e) => ctx.fail(&format!(
            "FUTEX_WAKE (shared) through the parent's mapping: expected 1 (one waiter woken), got {}",
            err_text(e)
        )),
    }
    if woke != Ok(1) {
        child.kill();
    }
    let reaped_early = match early {
        Ok(Some(end)) => Some(end),
        Ok(None) => None,
        Err(e) => {
            ctx.fail(&e);
            None
        }
    };
    let r = match reaped_early {
        Some(end) => child.end(
            "the waiting child (it ended before the wake)",
            end,
            false,
            Duration::ZERO,
        ),
        None => child.finish("the waiting child", Duration::from_secs(30)),
    };
    match r {
        Ok(t) => ctx.diag(&format!("the child: {t}")),
        Err(e) => ctx.fail(&e),
    }
    Ok(())
}

/// FUTEX_WAIT on a word of a shared mapping, nobody waking it: with the
/// value matching, ETIMEDOUT after the time-out; with another value, EAGAIN
/// at once. Once on a page never touched through the mapping, once on a
/// page only read through it.
pub fn shared_futex_wait_times_out(ctx: &mut Ctx) -> CaseResult {
    let (fd, map) = futex_file(ctx, 7)?;
    fd.pwrite_all(&7u32.to_le_bytes(), 64)?;
    // Page 1 read-faulted, page 0 never touched.
    if load_u32(map.addr() + FUTEX_OFF) != 7 {
        return Err(CaseError::Fail(
            "the futex word does not read 7 through the mapping".into(),
        ));
    }
    for (what, off) in [
        ("an untouched page", 64),
        ("a read-faulted page", FUTEX_OFF),
    ] {
        let a = map.addr() + off;
        let t0 = Instant::now();
        let r = futex(a, libc::FUTEX_WAIT, 7, Some(Duration::from_millis(50)));
        let el = t0.elapsed();
        match r {
            Err(libc::ETIMEDOUT) => ctx.check(el >= Duration::from_millis(45), || {
                format!("FUTEX_WAIT on {what}: ETIMEDOUT after {el:?}, before its 50 ms")
            }),
            Ok(v) => ctx.fail(&format!(
                "FUTEX_WAIT (shared, value 7 matching, 50 ms) on {what}: expected ETIMEDOUT, \
                 got {v} (woken, with nobody to wake it)"
            )),
            Err(e) => ctx.fail(&format!(
                "FUTEX_WAIT (shared, value 7 matching, 50 ms) on {what}: expected ETIMEDOUT, got {}",
                err_text(e)
            )),
        }
        match futex(a, libc::FUTEX_WAIT, 8, Some(Duration::from_secs(2))) {
            Err(libc::EAGAIN) => {}
            Ok(v) => ctx.fail(&format!(
                "FUTEX_WAIT (shared, value 8, the word holds 7) on {what}: expected EAGAIN, got {v}"
            )),
            Err(e) => ctx.fail(&format!(
                "FUTEX_WAIT (shared, value 8, the word holds 7) on {what}: expected EAGAIN, got {}",
                err_text(e)
            )),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Robust process-shared mutex

const MUTEX_PROCS: usize = 4;
const MUTEX_ITERS: u64 = 2000;
const COUNT_OFF: usize = 512;

fn mutex_ptr(base: usize) -> *mut libc::pthread_mutex_t {
    base as *mut libc::pthread_mutex_t
}

fn init_robust_pshared(base: usize) -> Result<(), String> {
    // SAFETY: all-zero is valid storage for pthread_mutexattr_init to fill.
    let mut attr: libc::pthread_mutexattr_t = unsafe { std::mem::zeroed() };
    let step = |what: &str, rc: c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(format!("{what}: {}", err_text(rc)))
        }
    };
    // SAFETY: `attr` is ours; the mutex storage is the first bytes of a live
    // shared mapping, large and aligned enough, used by nothing else yet.
    unsafe {
        step(
            "pthread_mutexattr_init",
            libc::pthread_mutexattr_init(&mut attr),
        )?;
        step(
            "pthread_mutexattr_setpshared(PTHREAD_PROCESS_SHARED)",
            libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED),
        )?;
        step(
            "pthread_mutexattr_setrobust(PTHREAD_MUTEX_ROBUST)",
            libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST),
        )?;
        step(
            "pthread_mutex_init",
            libc::pthread_mutex_init(mutex_ptr(base), &attr),
        )?;
        libc::pthread_mutexattr_destroy(&mut attr);
    }
    Ok(())
}

fn lock(base: usize) -> c_int {
    // SAFETY: an initialised process-shared mutex in a live shared mapping.
    unsafe { libc::pthread_mutex_lock(mutex_ptr(base)) }
}

fn unlock(base: usize) -> c_int {
    // SAFETY: as lock(), held by this thread.
    unsafe { libc::pthread_mutex_unlock(mutex_ptr(base)) }
}

/// A PTHREAD_PROCESS_SHARED | PTHREAD_MUTEX_ROBUST mutex in a shared
/// mapping of the file: 4 processes (two through the inherited mapping, two
/// through their own) each lock it, increment a counter next to it with a
/// plain load and store (yielding the CPU in between every 4th time), and
/// unlock, 2000 times; the counter must end at 8000, and some locks must
/// have found the mutex taken (pthread_mutex_trylock EBUSY first): under
/// contention glibc sleeps and wakes in shared futexes. Then one
/// process locks it and exits holding it while another is blocked in
/// pthread_mutex_lock: that one must get EOWNERDEAD (the kernel's robust
/// list walk at exit wakes it through the shared futex), make it consistent,
/// unlock, and lock it again normally.
pub fn robust_pshared_mutex_under_contention(ctx: &mut Ctx) -> CaseResult {
    let path = ctx.file("");
    let fd = Fd::create(&path)?;
    fd.pwrite_all(&vec![0u8; PAGE], 0)?;
    let map = Map::shared_rw(&fd, PAGE)?;
    let base = map.addr();
    init_robust_pshared(base)?;
    // The workers start together (a byte each through `go`), and yield the
    // CPU inside the critical section now and then, so that the others find
    // the mutex taken and sleep in the kernel (a shared futex) for it.
    let (go_rd, go_wr) = pipe()?;
    let go_rd = std::sync::Arc::new(go_rd);
    let mut workers = Vec::new();
    for i in 0..MUTEX_PROCS {
        let path = path.clone();
        let go_rd = go_rd.clone();
        workers.push(spawn(move || {
            // Odd workers use a mapping of their own, at another address.
            let own;
            let b = if i % 2 == 1 {
                let f = Fd::open_rw(&path)?;
                own = Map::shared_rw(&f, PAGE)?;
                own.addr()
            } else {
                base
            };
            let mut g = [0u8; 1];
            read_fd_timeout(&go_rd, &mut g, Duration::from_secs(20))?;
            let mut contended = 0u64;
            for k in 0..MUTEX_ITERS {
                // SAFETY: as lock().
                let rc = unsafe { libc::pthread_mutex_trylock(mutex_ptr(b)) };
                let rc = if rc == libc::EBUSY {
                    contended += 1;
                    lock(b)
                } else {
                    rc
                };
                if rc != 0 {
                    return Err(format!(
                        "iteration {k}: pthread_mutex_lock: expected 0, got {}",
                        err_text(rc)
                    ));
                }
                let c = load_u64(b + COUNT_OFF);
                if k % 4 == 0 {
                    // SAFETY: plain syscall.
                    unsafe { libc::sched_yield() };
                }
                store_u64(b + COUNT_OFF, c + 1);
                let rc = unlock(b);
                if rc != 0 {
                    return Err(format!(
                        "iteration {k}: pthread_mutex_unlock: expected 0, got {}",
                        err_text(rc)
                    ));
                }
            }
            Ok(contended.to_string())
        })?);
    }
    let t0 = Instant::now();
    write_fd(&go_wr, &[b'G'; MUTEX_PROCS])?;
    let mut ok = true;
    let mut contended = 0u64;
    for (i, w) in workers.into_iter().enumerate() {
        match w.finish(&format!("worker {i}"), Duration::from_secs(60)) {
            Ok(t) => contended += t.trim().parse::<u64>().unwrap_or(0),
            Err(e) => {
                ctx.fail(&e);
                ok = false;
            }
        }
    }
    let count = load_u64(base + COUNT_OFF);
    ctx.diag(&format!(
        "{MUTEX_PROCS} processes x {MUTEX_ITERS} lock/increment/unlock: {:.1} s, \
         {contended} locks found it taken",
        t0.elapsed().as_secs_f64()
    ));
    if ok {
        ctx.check(contended > 0, || {
            "no pthread_mutex_trylock ever found the mutex taken: the processes never \
             contended, so no shared futex was used"
                .into()
        });
        ctx.check_eq(
            "counter incremented under the mutex",
            MUTEX_PROCS as u64 * MUTEX_ITERS,
            count,
        );
    }
    if ctx.failed() {
        return Ok(());
    }

    // The owner dies holding it while a waiter is blocked.
    let (ready_rd, ready_wr) = pipe()?;
    let owner = spawn(move || {
        let rc = lock(base);
        if rc != 0 {
            return Err(format!(
                "pthread_mutex_lock: expected 0, got {}",
                err_text(rc)
            ));
        }
        write_fd(&ready_wr, b"L")?;
        // Time for the waiter to block in pthread_mutex_lock; then _exit
        // holding the mutex.
        std::thread::sleep(Duration::from_millis(400));
        Ok(String::new())
    })?;
    let waiter = spawn(move || {
        let mut b = [0u8; 1];
        read_fd_timeout(&ready_rd, &mut b, Duration::from_secs(20))?;
        let rc = lock(base);
        if rc != libc::EOWNERDEAD {
            return Err(format!(
                "pthread_mutex_lock while the owner died holding it: expected EOWNERDEAD, got {}",
                err_text(rc)
            ));
        }
        // SAFETY: the mutex is held by this thread, in EOWNERDEAD state.
        let rc = unsafe { libc::pthread_mutex_consistent(mutex_ptr(base)) };
        if rc != 0 {
            return Err(format!(
                "pthread_mutex_consistent: expected 0, got {}",
                err_text(rc)
            ));
        }
        let rc = unlock(base);
        if rc != 0 {
            return Err(format!(
                "pthread_mutex_unlock after consistent: expected 0, got {}",
                err_text(rc)
            ));
        }
        let rc = lock(base);
        if rc != 0 {
            return Err(format!(
                "pthread_mutex_lock after recovery: expected 0, got {}",
                err_text(rc)
            ));
        }
        let rc = unlock(base);
        if rc != 0 {
            return Err(format!(
                "pthread_mutex_unlock after recovery: expected 0, got {}",
                err_text(rc)
            ));
        }
        Ok(String::new())
    })?;
    if let Err(e) = owner.finish(
        "the owner that dies holding the mutex",
        Duration::from_secs(30),
    ) {
        ctx.fail(&e);
    }
    if let Err(e) = waiter.finish("the waiter", Duration::from_secs(30)) {
        ctx.fail(&e);
    }
    if !ctx.failed() {
        let rc = lock(base);
        ctx.check(rc == 0, || {
            format!(
                "the parent's pthread_mutex_lock after recovery: expected 0, got {}",
                err_text(rc)
            )
        });
        if rc == 0 {
            let rc = unlock(base);
            ctx.check(rc == 0, || {
                format!("the parent's pthread_mutex_unlock: {}", err_text(rc))
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// /proc/PID/mem, process_vm_readv/writev

const MEM_PAGES: usize = 4;

fn mem_pattern(gen: u8) -> Vec<u8> {
    (0..MEM_PAGES * PAGE)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(gen) ^ (i / PAGE) as u8)
        .collect()
}

/// /proc/self/mem and process_vm_readv/writev go through get_user_pages:
/// - pread of /proc/self/mem at a mapped address returns the file's bytes;
/// - pwrite of /proc/self/mem at a page only read-faulted, and at a page not
///   faulted at all, stores new bytes, which pread of the file shows; fsync
///   then flushes those two pages (entries_flushed rises by at least 2), a
///   second fsync nothing;
/// - the parent process_vm_readv's a child's own mapping of the file and
///   gets the bytes, and process_vm_writev's into it, which reaches the file.
pub fn proc_self_mem_reads_and_writes_mapped_bytes(ctx: &mut Ctx) -> CaseResult {
    let path = ctx.file("");
    let fd = Fd::create(&path)?;
    let pat = mem_pattern(1);
    fd.pwrite_all(&pat, 0)?;
    fd.fsync()?;
    let map = Map::shared_rw(&fd, MEM_PAGES * PAGE)?;
    let mem = Fd::open(std::path::Path::new("/proc/self/mem"), libc::O_RDWR, 0)?;
    // Page 0 read through the mapping first, page 1 never touched.
    map.read(0);
    let mut buf = vec![0u8; 2 * PAGE];
    match pread_raw(mem.raw(), buf.as_mut_ptr() as usize, buf.len(), map.addr() as u64) {
        Ok(n) if n == buf.len() => {
            if let Some(m) = first_diff("pread of /proc/self/mem at the mapping (pages 0-1)", &pat[..2 * PAGE], &buf) {
                ctx.fail(&m);
            }
        }
        Ok(n) => ctx.fail(&format!(
            "pread of /proc/self/mem at the mapping: expected {} bytes, got {n}",
            buf.len()
        )),
        Err(e) => ctx.fail(&format!(
            "pread of /proc/self/mem at the mapped address {:#x} (2 pages): expected {} bytes, got {}",
            map.addr(),
            buf.len(),
            err_text(e)
        )),
    }
    // Page 2 only read-faulted, page 3 not faulted: pwrite /proc/self/mem.
    map.read(2 * PAGE + 5);
    let new: Vec<u8> = (0..300).map(|i| 0xa0 ^ i as u8).collect();
    let mut want = pat.clone();
    let mut wrote = 0;
    for (what, off) in [
        ("a read-faulted page", 2 * PAGE + 100),
        ("a never-faulted page", 3 * PAGE + 1000),
    ] {
        let addr = (map.addr() + off) as u64;
        match pwrite_raw(mem.raw(), new.as_ptr() as usize, new.len(), addr) {
            Ok(n) if n == new.len() => {
                want[off..off + new.len()].copy_from_slice(&new);
                wrote += 1;
            }
            Ok(n) => ctx.fail(&format!("pwrite of /proc/self/mem at {what}: wrote {n} of {} bytes", new.len())),
            Err(e) => ctx.fail(&format!(
                "pwrite of /proc/self/mem at {what} of the mapping: expected {} bytes written, got {}",
                new.len(),
                err_text(e)
            )),
        }
    }
    let mut got = vec![0u8; MEM_PAGES * PAGE];
    fd.pread_exact(&mut got, 0)?;
    if let Some(m) = first_diff(
        "pread of the file after the /proc/self/mem writes",
        &want,
        &got,
    ) {
        ctx.fail(&m);
    }
    map.copy_out(0, &mut got);
    if let Some(m) = first_diff("the mapping after the /proc/self/mem writes", &want, &got) {
        ctx.fail(&m);
    }
    if wrote == 2 {
        check_fsync_flushes(ctx, &fd, "the /proc/self/mem writes to 2 pages", 2)?;
    }
    drop(mem);

    // process_vm_readv / process_vm_writev on a child's own mapping.
    let (addr_rd, addr_wr) = pipe()?;
    let (done_rd, done_wr) = pipe()?;
    let child_path = path.clone();
    let child = spawn(move || {
        let f = Fd::open_rw(&child_path)?;
        let own = Map::shared_rw(&f, MEM_PAGES * PAGE)?;
        write_fd(&addr_wr, &(own.addr() as u64).to_le_bytes())?;
        let mut b = [0u8; 1];
        read_fd_timeout(&done_rd, &mut b, Duration::from_secs(30))?;
        Ok(String::new())
    })?;
    let mut a = [0u8; 8];
    read_fd_timeout(&addr_rd, &mut a, Duration::from_secs(20))?;
    let caddr = u64::from_le_bytes(a) as usize;
    let mut rbuf = vec![0u8; MEM_PAGES * PAGE];
    let local = libc::iovec {
        iov_base: rbuf.as_mut_ptr().cast(),
        iov_len: rbuf.len(),
    };
    let remote = libc::iovec {
        iov_base: caddr as *mut c_void,
        iov_len: rbuf.len(),
    };
    // SAFETY: `local` describes our own buffer; the remote range is checked
    // by the kernel.
    let n = unsafe { libc::process_vm_readv(child.pid, &local, 1, &remote, 1, 0) };
    if n < 0 {
        ctx.fail(&format!(
            "process_vm_readv of the child's mapping ({} bytes at {caddr:#x}): expected {} bytes, got {}",
            rbuf.len(),
            rbuf.len(),
            err_text(errno())
        ));
    } else if n as usize != rbuf.len() {
        ctx.fail(&format!(
            "process_vm_readv of the child's mapping: {n} of {} bytes",
            rbuf.len()
        ));
    } else if let Some(m) = first_diff("process_vm_readv of the child's mapping", &want, &rbuf) {
        ctx.fail(&m);
    }
    let wdata = vec![0x3cu8; 200];
    let local = libc::iovec {
        iov_base: wdata.as_ptr() as *mut c_void,
        iov_len: wdata.len(),
    };
    let remote = libc::iovec {
        iov_base: (caddr + PAGE + 300) as *mut c_void,
        iov_len: wdata.len(),
    };
    // SAFETY: as above; the kernel only reads `wdata`.
    let n = unsafe { libc::process_vm_writev(child.pid, &local, 1, &remote, 1, 0) };
    if n < 0 {
        ctx.fail(&format!(
            "process_vm_writev into the child's mapping: expected {} bytes, got {}",
            wdata.len(),
            err_text(errno())
        ));
    } else if n as usize != wdata.len() {
        ctx.fail(&format!(
            "process_vm_writev into the child's mapping: {n} of {} bytes",
            wdata.len()
        ));
    } else {
        want[PAGE + 300..PAGE + 500].copy_from_slice(&wdata);
        fd.pread_exact(&mut got, 0)?;
        if let Some(m) = first_diff(
            "pread of the file after process_vm_writev into the child's mapping",
            &want,
            &got,
        ) {
            ctx.fail(&m);
        }
    }
    write_fd(&done_wr, b"D")?;
    if let Err(e) = child.finish("the child", Duration::from_secs(30)) {
        ctx.fail(&e);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// O_DIRECT between the block device and a mapping

const OD_PAGES: usize = 8;
const OD_READ_OFF: u64 = 0;
const OD_WRITE_OFF: u64 = 1 << 20;

/// The device holds a pattern; an O_DIRECT pread from it into a shared
/// mapping of an 8-page file (pages 0, 2, 4 allocated, the rest holes;
/// pages 1 and 2 read-faulted before) must fill the file: the mapping and
/// pread show the pattern, and fsync flushes all 8 pages (the device's
/// copy stored to them through pinned pages), a second fsync nothing.
pub fn odirect_read_from_block_device_into_mapping(ctx: &mut Ctx) -> CaseResult {
    let dev = open_odirect_dev()?;
    let gen = u64::from(std::process::id()) & 0xffff;
    let mut src = Anon::new(OD_PAGES * PAGE)?;
    fill_words(src.bytes_mut(), |w| dev_word(1, w, gen));
    dev_write(&dev, &src, OD_READ_OFF)?;
    let fd = Fd::create(&ctx.file(""))?;
    fd.ftruncate((OD_PAGES * PAGE) as u64)?;
    for p in [0, 2, 4] {
        fd.pwrite_all(&vec![0x11u8; PAGE], (p * PAGE) as u64)?;
    }
    fd.fsync()?;
    let map = Map::shared_rw(&fd, OD_PAGES * PAGE)?;
    map.read(PAGE + 7);
    map.read(2 * PAGE + 7);
    let len = OD_PAGES * PAGE;
    match pread_raw(dev.raw(), map.addr(), len, OD_READ_OFF) {
        Ok(n) if n == len => {}
        Ok(n) => {
            return Err(CaseError::Fail(format!(
                "O_DIRECT pread from {} into the MAP_SHARED mapping: expected {len} bytes, got {n}",
                dev.name()
            )))
        }
        Err(e) => {
            return Err(CaseError::Fail(format!(
            "O_DIRECT pread from {} into the MAP_SHARED mapping ({OD_PAGES} pages: 3 allocated, \
             5 holes, 2 read-faulted): expected {len} bytes, got {}",
            dev.name(),
            err_text(e)
        )))
        }
    }
    let mut got = vec![0u8; len];
    map.copy_out(0, &mut got);
    if let Some(m) = first_diff(
        "the mapping after the O_DIRECT read into it",
        src.bytes(),
        &got,
    ) {
        ctx.fail(&m);
    }
    fd.pread_exact(&mut got, 0)?;
    if let Some(m) = first_diff(
        "pread of the file after the O_DIRECT read into its mapping",
        src.bytes(),
        &got,
    ) {
        ctx.fail(&m);
    }
    check_fsync_flushes(
        ctx,
        &fd,
        "an O_DIRECT read into 8 mapped pages",
        OD_PAGES as i128,
    )
}

/// A pattern stored through a shared mapping (pages 0-4 allocated before,
/// 6 a hole filled by the stores, 5 a hole only read, 7 a hole never
/// touched) goes to the device with an O_DIRECT pwrite from the mapping;
/// the device reads back (O_DIRECT into a plain buffer) as the pattern, with
/// zeros for the two holes.
pub fn odirect_write_from_mapping_to_block_device(ctx: &mut Ctx) -> CaseResult {
    let dev = open_odirect_dev()?;
    let gen = u64::from(std::process::id()) & 0xffff;
    let len = OD_PAGES * PAGE;
    let mut junk = Anon::new(len)?;
    junk.bytes_mut().fill(0xee);
    dev_write(&dev, &junk, OD_WRITE_OFF)?;
    let fd = Fd::create(&ctx.file(""))?;
    fd.ftruncate(len as u64)?;
    fd.pwrite_all(&vec![0x22u8; 5 * PAGE], 0)?;
    let map = Map::shared_rw(&fd, len)?;
    let mut want = vec![0u8; len];
    fill_words(&mut want, |w| dev_word(2, w, gen));
    want[5 * PAGE..6 * PAGE].fill(0);
    want[7 * PAGE..].fill(0);
    map.read(3 * PAGE); // read-faulted first, then stored: pfn_mkwrite
    map.read(5 * PAGE);
    for p in [0, 1, 2, 3, 4, 6] {
        map.copy_in(p * PAGE, &want[p * PAGE..(p + 1) * PAGE]);
    }
    match pwrite_raw(dev.raw(), map.addr(), len, OD_WRITE_OFF) {
        Ok(n) if n == len => {}
        Ok(n) => {
            return Err(CaseError::Fail(format!(
                "O_DIRECT pwrite to {} from the MAP_SHARED mapping: expected {len} bytes, got {n}",
                dev.name()
            )))
        }
        Err(e) => {
            return Err(CaseError::Fail(format!(
                "O_DIRECT pwrite to {} from the MAP_SHARED mapping ({OD_PAGES} pages, 2 of them \
             holes): expected {len} bytes, got {}",
                dev.name(),
                err_text(e)
            )))
        }
    }
    let mut back = Anon::new(len)?;
    dev_read(&dev, &mut back, OD_WRITE_OFF)?;
    if let Some(m) = first_diff(
        "the device read back after the O_DIRECT write from the mapping",
        &want,
        back.bytes(),
    ) {
        ctx.fail(&m);
    }
    let mut got = vec![0u8; len];
    fd.pread_exact(&mut got, 0)?;
    if let Some(m) = first_diff(
        "pread of the file (unchanged by the O_DIRECT write from it)",
        &want,
        &got,
    ) {
        ctx.fail(&m);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Stress: truncate against O_DIRECT reads into the mapping

const STRESS_LEN: usize = 1 << 20;
const STRESS_DEV_OFF: u64 = 8 << 20;
const G_PAGES: usize = 256;
const G_FILE: u64 = 0xc;

fn g_tag(page: u64, round: u64) -> u64 {
    0xfe00_0000_0000_0000 | G_FILE << 48 | (page & 0xff_ffff) << 24 | (round & 0xff_ffff)
}

fn pin_waits(ctx: &Ctx) -> Option<u64> {
    let p = ctx.stats_dir()?.join("pin_waits");
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// Process C: until `deadline`, truncate G to 0, write its 256 pages (new
/// blocks, each word a tag of G, the page and the round) and read them all
/// back. No word may be anything but its tag; the device pattern P in one
/// means a block freed while an O_DIRECT read had it pinned went to G.
fn g_writer(path: &std::path::Path, deadline: Instant) -> Result<String, String> {
    let g = Fd::create(path)?;
    let mut round = 0u64;
    let mut page = vec![0u8; PAGE];
    while Instant::now() < deadline {
        round += 1;
        g.ftruncate(0)?;
        for p in 0..G_PAGES as u64 {
            fill_words(&mut page, |_| g_tag(p, round));
            g.pwrite_all(&page, p * PAGE as u64)?;
        }
        for p in 0..G_PAGES as u64 {
            g.pread_exact(&mut page, p * PAGE as u64)?;
            for (i, c) in page.chunks_exact(8).enumerate() {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                let w = u64::from_le_bytes(b);
                if w != g_tag(p, round) {
                    return Err(format!(
                        "round {round}: G page {p} word {i} holds {w:#x}, expected {:#x}{}",
                        g_tag(p, round),
                        if is_dev_word(w) {
                            " (the device pattern P: a block of F was freed while an O_DIRECT \
                             read had it pinned, reused for G, and then written by that read)"
                        } else {
                            ""
                        }
                    ));
                }
            }
        }
    }
    Ok(format!(
        "{round} rounds of {G_PAGES} new pages of G checked"
    ))
}

/// Thread A O_DIRECT-reads 1 MiB of the device (pattern P) into a shared
/// mapping of F, again and again; thread B truncates F to 0 and extends it
/// back, again and again, so that F's blocks are freed under A's pinned
/// pages; process C allocates and checks the blocks of another file G. G
/// must never show P (see [`g_writer`]). A's reads may fail with EFAULT or
/// be short while F is short, but some must succeed. A last read, with F
/// left alone, must fill the mapping with P. With counters, reports (and,
/// where the file exists, requires a rise of) `pin_waits`: truncates that
/// waited for pinned pages.
pub fn truncate_racing_odirect_read_stress(ctx: &mut Ctx) -> CaseResult {
    let run_for = secs_env("FERROTEST_COHERENCE_SECS", 6);
    let dev = open_odirect_dev()?;
    let gen = u64::from(std::process::id()) & 0xffff;
    let mut p_buf = Anon::new(STRESS_LEN)?;
    fill_words(p_buf.bytes_mut(), |w| dev_word(3, w, gen));
    dev_write(&dev, &p_buf, STRESS_DEV_OFF)?;
    let pins0 = pin_waits(ctx);
    let deadline = Instant::now() + run_for;
    let g_path = ctx.file(".b");
    let c = spawn(move || g_writer(&g_path, deadline))?;

    let f = Fd::create(&ctx.file(""))?;
    f.ftruncate(STRESS_LEN as u64)?;
    let map = Map::shared_rw(&f, STRESS_LEN)?;
    let (full, short, efault, cycles) = (
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    );
    let errors = Errors::new();
    std::thread::scope(|s| {
        let (full, short, efault, cycles, errors, dev, f) =
            (&full, &short, &efault, &cycles, &errors, &dev, &f);
        let base = map.addr();
        s.spawn(move || {
            while Instant::now() < deadline && !errors.any() {
                match pread_raw(dev.raw(), base, STRESS_LEN, STRESS_DEV_OFF) {
                    Ok(STRESS_LEN) => full.fetch_add(1, SeqCst),
                    Ok(_) => short.fetch_add(1, SeqCst),
                    Err(libc::EFAULT) => efault.fetch_add(1, SeqCst),
                    Err(e) => {
                        errors.add(format!("O_DIRECT pread into F's mapping: {}", err_text(e)));
                        break;
                    }
                };
            }
        });
        s.spawn(move || {
            let mut rng = Rng::new(gen);
            while Instant::now() < deadline && !errors.any() {
                if let Err(e) = f.ftruncate(0) {
                    errors.add(format!("ftruncate F to 0: {e}"));
                    break;
                }
                std::thread::sleep(Duration::from_micros(rng.below(300) as u64));
                if let Err(e) = f.ftruncate(STRESS_LEN as u64) {
                    errors.add(format!("ftruncate F to {STRESS_LEN}: {e}"));
                    break;
                }
                cycles.fetch_add(1, SeqCst);
                std::thread::sleep(Duration::from_micros(200 + rng.below(2000) as u64));
            }
        });
    });
    errors.report(ctx);
    let c_res = c.finish(
        "process C (allocating and checking G)",
        run_for + Duration::from_secs(60),
    );
    let (full, short, efault, cycles) = (
        full.load(SeqCst),
        short.load(SeqCst),
        efault.load(SeqCst),
        cycles.load(SeqCst),
    );
    let c_text = match c_res {
        Ok(t) => t,
        Err(e) => {
            ctx.fail(&e);
            "failed".into()
        }
    };
    ctx.diag(&format!(
        "{} s: {full} full O_DIRECT reads of 1 MiB into F's mapping, {short} short, {efault} EFAULT; \
         {cycles} truncate/extend cycles of F; C: {c_text}",
        run_for.as_secs()
    ));
    if full == 0 {
        ctx.fail(&format!(
            "no O_DIRECT read into F's MAP_SHARED mapping succeeded ({efault} EFAULT, {short} short): \
             the race was never run"
        ));
    }
    // F left alone: one more read must fill the mapping with P.
    match pread_raw(dev.raw(), map.addr(), STRESS_LEN, STRESS_DEV_OFF) {
        Ok(STRESS_LEN) => {
            let mut got = vec![0u8; STRESS_LEN];
            map.copy_out(0, &mut got);
            if let Some(m) = first_diff(
                "F's mapping after a last, unraced O_DIRECT read",
                p_buf.bytes(),
                &got,
            ) {
                ctx.fail(&m);
            }
        }
        Ok(n) => ctx.fail(&format!(
            "the last O_DIRECT read into F's mapping: {n} of {STRESS_LEN} bytes"
        )),
        Err(e) => ctx.fail(&format!(
            "the last, unraced O_DIRECT read into F's mapping: expected {STRESS_LEN} bytes, got {}",
            err_text(e)
        )),
    }
    match (pins0, pin_waits(ctx)) {
        (Some(a), Some(b)) => {
            ctx.diag(&format!("pin_waits rose by {}", b.wrapping_sub(a)));
            ctx.check(b > a, || {
                format!("pin_waits did not rise ({a} before, {b} after): no truncate waited for a pinned page in {cycles} cycles")
            });
        }
        _ if ctx.stats_dir().is_some() => ctx.diag("no pin_waits counter"),
        _ => {}
    }
    Ok(())
}

pub(crate) fn stat_value(ctx: &Ctx, name: &str) -> Option<u64> {
    let p = ctx.stats_dir()?.join(name);
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// A page a pipe holds a reference to (vmsplice takes get_user_pages
/// references) can be written through the kernel's mapping with no PTE to
/// fault, so fsync must keep its entry marked while the reference lasts:
/// each fsync flushes it again (`pinned_remarks` rises), and once the pipe
/// is drained one more fsync flushes it and the next flushes nothing.
pub fn fsync_keeps_pinned_pages_dirty(ctx: &mut Ctx) -> CaseResult {
    if ctx.stats_dir().is_none() {
        return Err(CaseError::Skip(
            "needs the ferrofs counters (--stats)".into(),
        ));
    }
    let fd = Fd::create(&ctx.file(""))?;
    fd.pwrite_all(&vec![0u8; PAGE], 0)?;
    fd.fsync()?;
    let map = Map::shared_rw(&fd, PAGE)?;
    map.copy_in(0, &[0x5a; 64]);
    let mut p = [0 as c_int; 2];
    // SAFETY: plain syscall on a local array of two ints.
    if unsafe { libc::pipe(p.as_mut_ptr()) } != 0 {
        return Err(format!("pipe: {}", err_text(errno())).into());
    }
    // SAFETY: the fds were just returned by pipe(2) and are owned here.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
    let iov = libc::iovec {
        iov_base: map.addr() as *mut libc::c_void,
        iov_len: PAGE,
    };
    // SAFETY: iov points into a live mapping of PAGE bytes.
    let n = unsafe { libc::vmsplice(wr.as_raw_fd(), &iov, 1, 0) };
    if n != PAGE as isize {
        return Err(format!(
            "vmsplice of the mapped page: expected {PAGE}, got {n} ({})",
            err_text(errno())
        )
        .into());
    }
    let (Some(r0), Some(f0)) = (
        stat_value(ctx, "pinned_remarks"),
        stat_value(ctx, "entries_flushed"),
    ) else {
        return Err(CaseError::Skip("no pinned_remarks counter".into()));
    };
    fd.fsync()?;
    fd.fsync()?;
    let (r1, f1) = (
        stat_value(ctx, "pinned_remarks").unwrap_or(0),
        stat_value(ctx, "entries_flushed").unwrap_or(0),
    );
    ctx.check_eq(
        "pinned_remarks after two fsyncs with the page in a pipe",
        2,
        r1 as i128 - r0 as i128,
    );
    ctx.check_eq(
        "entries_flushed by two fsyncs with the page in a pipe",
        2,
        f1 as i128 - f0 as i128,
    );
    let mut buf = vec![0u8; PAGE];
    // SAFETY: reads into a local buffer of PAGE bytes.
    let got = unsafe { libc::read(rd.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, PAGE) };
    if got != PAGE as isize || buf[..64] != [0x5a; 64] {
        ctx.fail(&format!(
            "reading the pipe back: {got} bytes, first byte {:#x}",
            buf[0]
        ));
    }
    drop(rd);
    drop(wr);
    fd.fsync()?;
    let f2 = stat_value(ctx, "entries_flushed").unwrap_or(0);
    fd.fsync()?;
    let f3 = stat_value(ctx, "entries_flushed").unwrap_or(0);
    ctx.check_eq(
        "entries_flushed by the fsync after the pipe let go",
        1,
        f2 as i128 - f1 as i128,
    );
    ctx.check_eq(
        "entries_flushed by the next fsync",
        0,
        f3 as i128 - f2 as i128,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(libc::EFAULT), "EFAULT");
        assert_eq!(errno_name(libc::ETIMEDOUT), "ETIMEDOUT");
        assert_eq!(errno_name(libc::EOWNERDEAD), "EOWNERDEAD");
        assert_eq!(errno_name(9999), "errno 9999");
        assert!(err_text(libc::EIO).starts_with("EIO ("));
    }

    #[test]
    fn device_pattern_is_recognized_and_distinct_from_tags() {
        for w in [0u64, 1, 0xff_ffff, 0x12_3456] {
            for region in [1u64, 2, 3, 0xff] {
                let d = dev_word(region, w, 0xabcd);
                assert!(is_dev_word(d), "{d:#x}");
                assert_eq!(d & 0xff_ffff, w & 0xff_ffff);
                assert_eq!((d >> 32) & 0xff, region);
            }
            assert!(!is_dev_word(g_tag(w, 7)));
        }
        assert_ne!(dev_word(1, 5, 1), dev_word(2, 5, 1));
    }

    #[test]
    fn first_diff_names_offset_and_page() {
        let a = vec![1u8; 3 * PAGE];
        let mut b = a.clone();
        assert_eq!(first_diff("x", &a, &b), None);
        b[PAGE..2 * PAGE].fill(0);
        let m = first_diff("x", &a, &b).unwrap_or_default();
        assert!(m.contains("offset 4096 (page 1)"), "{m}");
        assert!(m.contains("reads as zeros"), "{m}");
    }
}
