//! The few system calls std does not wrap (mount, fallocate, mmap, ...),
//! errno names, 4 KiB-aligned buffers for O_DIRECT, and the device.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

pub type Errno = i32;

pub fn errno() -> Errno {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// errno of an io::Error (0 if it has none: not from a system call).
pub fn errno_of(e: &io::Error) -> Errno {
    e.raw_os_error().unwrap_or(0)
}

pub fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap_or_else(|_| CString::new("?").unwrap())
}

/// The symbolic name of an errno value ("EIO"), or "errno N".
pub fn errno_name(e: Errno) -> String {
    let n = match e {
        0 => "no errno",
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::ENOTBLK => "ENOTBLK",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ENOTTY => "ENOTTY",
        libc::ETXTBSY => "ETXTBSY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::ESPIPE => "ESPIPE",
        libc::EROFS => "EROFS",
        libc::EMLINK => "EMLINK",
        libc::EPIPE => "EPIPE",
        libc::EDOM => "EDOM",
        libc::ERANGE => "ERANGE",
        libc::EDEADLK => "EDEADLK",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOLCK => "ENOLCK",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ELOOP => "ELOOP",
        libc::ENODATA => "ENODATA",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EBADMSG => "EBADMSG",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ESTALE => "ESTALE",
        libc::EUCLEAN => "EUCLEAN",
        libc::ENOTCONN => "ENOTCONN",
        libc::ETIMEDOUT => "ETIMEDOUT",
        _ => return format!("errno {e}"),
    };
    n.to_string()
}

/// The name of a signal ("SIGBUS").
pub fn signal_name(s: i32) -> String {
    let n = match s {
        libc::SIGBUS => "SIGBUS",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGALRM => "SIGALRM",
        libc::SIGKILL => "SIGKILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTRAP => "SIGTRAP",
        _ => return format!("signal {s}"),
    };
    n.to_string()
}

pub fn mount(dev: &Path, dir: &Path, fstype: &str, data: &str) -> Result<(), Errno> {
    let (d, m) = (cstr(dev), cstr(dir));
    let t = CString::new(fstype).expect("no NUL");
    let o = CString::new(data).expect("no NUL");
    // SAFETY: NUL-terminated strings that outlive the call.
    let r = unsafe { libc::mount(d.as_ptr(), m.as_ptr(), t.as_ptr(), 0, o.as_ptr().cast()) };
    if r == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

pub fn umount(dir: &Path, flags: i32) -> Result<(), Errno> {
    let m = cstr(dir);
    // SAFETY: NUL-terminated string that outlives the call.
    if unsafe { libc::umount2(m.as_ptr(), flags) } == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

/// Whether `dir` is a mount point now (from /proc/self/mounts).
pub fn is_mounted(dir: &Path) -> bool {
    let want = dir.as_os_str().as_bytes();
    std::fs::read("/proc/self/mounts")
        .map(|m| {
            m.split(|&c| c == b'\n')
                .any(|l| l.split(|&c| c == b' ').nth(1) == Some(want))
        })
        .unwrap_or(false)
}

/// A zeroed buffer aligned to 4 KiB (O_DIRECT I/O).
pub struct AlignedBuf {
    ptr: *mut u8,
    len: usize,
}

impl AlignedBuf {
    pub fn new(len: usize) -> AlignedBuf {
        let layout = Layout::from_size_align(len.max(4096), 4096).expect("layout");
        // SAFETY: the layout has a nonzero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        AlignedBuf { ptr, len }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.len.max(4096), 4096).expect("layout");
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr, layout) };
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `len` initialised bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: `len` initialised bytes owned exclusively by self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

fn open_direct(dev: &Path, write: bool) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_DIRECT)
        .open(dev)
}

/// Size of a block device or file, in bytes.
pub fn device_bytes(dev: &Path) -> io::Result<u64> {
    use std::io::Seek;
    let mut f = std::fs::File::open(dev)?;
    f.seek(io::SeekFrom::End(0))
}

/// Write `buf` at the start of `dev` with O_DIRECT (past the page cache,
/// which would otherwise hide what the module stored through DAX), synced.
pub fn write_device(dev: &Path, buf: &AlignedBuf, at: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let f = open_direct(dev, true)?;
    f.write_all_at(buf, at)?;
    f.sync_all()
}

/// Read `len` bytes from the start of `dev` with O_DIRECT.
pub fn read_device(dev: &Path, len: usize) -> io::Result<AlignedBuf> {
    use std::os::unix::fs::FileExt;
    let f = open_direct(dev, false)?;
    let mut buf = AlignedBuf::new(len);
    f.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}
