//! What a round does with a mounted image, in a child process: walk the
//! whole tree (readdir, lstat, readlink, stat), read every file, map files
//! (read, write + msync, private write) in grandchildren so that a SIGBUS
//! is recorded rather than fatal, write, append, truncate down and up,
//! punch holes, allocate, seek data and holes, change mode, owner and
//! times, and create, link, rename, unlink and remove in a few directories. Every call's result is reported: success, or its errno.
//!
//! Events go to the parent as lines on a pipe, as they happen, so a child
//! killed by its alarm still tells where it was:
//!
//! ```text
//! p PHASE DETAIL     what the child is doing now
//! e OP ERRNO PATH    a call failed
//! n COUNT            calls that succeeded (sent at the end of a phase)
//! s SIGNAL PATH      a grandchild mapping PATH died of SIGNAL
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::sys::{errno, errno_of, Errno};

/// Bounds that keep a round short whatever the image says.
pub struct Limits {
    pub max_entries: usize,
    pub max_depth: usize,
    pub read_per_file: u64,
    pub read_total: u64,
    pub map_files: usize,
    pub write_files: usize,
    pub ns_dirs: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_entries: 1500,
            max_depth: 12,
            read_per_file: 8 << 20,
            read_total: 48 << 20,
            map_files: 5,
            write_files: 5,
            ns_dirs: 3,
        }
    }
}

/// The event stream to the parent (a pipe; every line is one write, far
/// below PIPE_BUF, so grandchildren's lines never interleave inside one).
pub struct Events {
    fd: i32,
    ok: u64,
}

impl Events {
    pub fn new(fd: i32) -> Events {
        Events { fd, ok: 0 }
    }

    /// Send one protocol line as it is.
    pub fn raw(&self, line: &str) {
        self.send(line)
    }

    fn send(&self, line: &str) {
        let mut l: String = line.chars().filter(|&c| c != '\n').take(400).collect();
        l.push('\n');
        let b = l.as_bytes();
        // SAFETY: `b` is valid for reads of its length. A short or failed
        // write only loses a diagnostic line.
        let _ = unsafe { libc::write(self.fd, b.as_ptr().cast(), b.len()) };
    }

    pub fn phase(&mut self, what: &str, detail: &str) {
        self.flush();
        self.send(&format!("p {what} {detail}"));
    }

    pub fn fail(&mut self, op: &str, e: Errno, path: &Path) {
        self.send(&format!("e {op} {e} {}", path.display()));
    }

    pub fn signal(&mut self, sig: i32, path: &Path) {
        self.send(&format!("s {sig} {}", path.display()));
    }

    pub fn flush(&mut self) {
        if self.ok > 0 {
            self.send(&format!("n {}", self.ok));
            self.ok = 0;
        }
    }

    /// Record the result of `op` on `path`.
    pub fn rec<T>(&mut self, op: &str, path: &Path, r: io::Result<T>) -> Option<T> {
        match r {
            Ok(v) => {
                self.ok += 1;
                Some(v)
            }
            Err(e) => {
                self.fail(op, errno_of(&e), path);
                None
            }
        }
    }

    /// Record a libc call's return value (negative: failed, errno set).
    pub fn rec_c(&mut self, op: &str, path: &Path, r: i64) -> Option<i64> {
        if r < 0 {
            self.fail(op, errno(), path);
            None
        } else {
            self.ok += 1;
            Some(r)
        }
    }
}

#[derive(Default)]
struct Tree {
    dirs: Vec<PathBuf>,
    /// Regular files and their sizes.
    files: Vec<(PathBuf, u64)>,
    symlinks: Vec<PathBuf>,
}

/// Everything a round does on the filesystem mounted at `mnt`.
pub fn exercise(mnt: &Path, ev: &mut Events, lim: &Limits) {
    ev.phase("walk", &mnt.display().to_string());
    let tree = walk(mnt, ev, lim);
    ev.phase("read", "");
    let mut budget = lim.read_total;
    for (f, size) in &tree.files {
        read_file(f, *size, ev, lim, &mut budget);
    }
    for l in &tree.symlinks {
        ev.rec("readlink", l, fs::read_link(l));
        // Follows the link: may leave the mount, only to stat.
        ev.rec("stat", l, fs::metadata(l));
    }
    // Mapping past the end of a file is a SIGBUS by definition: only files
    // with bytes are mapped.
    let mappable = Tree {
        files: tree.files.iter().filter(|f| f.1 > 0).cloned().collect(),
        ..Tree::default()
    };
    let chosen = choose_files(&mappable, lim.map_files);
    for (f, size) in &chosen {
        ev.phase("mmap", &f.display().to_string());
        map_in_grandchild(f, *size, ev);
    }
    let chosen = choose_files(&tree, lim.write_files);
    for (f, size) in &chosen {
        ev.phase("write", &f.display().to_string());
        write_ops(f, *size, ev);
    }
    let mut dirs: Vec<&PathBuf> = tree.dirs.iter().take(lim.ns_dirs).collect();
    if let Some(last) = tree.dirs.last() {
        if !dirs.contains(&last) {
            dirs.push(last);
        }
    }
    // The last first: the rmdir of a subdirectory done in an earlier one
    // would otherwise remove a later one.
    for (i, d) in dirs.iter().enumerate().rev() {
        ev.phase("names", &d.display().to_string());
        name_ops(mnt, d, i, &tree, ev);
    }
    ev.phase("sync", "");
    let root = mnt.to_path_buf();
    // SAFETY: plain system calls on a path and an fd we own.
    unsafe {
        let c = crate::sys::cstr(mnt);
        let mut st: libc::statfs = std::mem::zeroed();
        let r = libc::statfs(c.as_ptr(), &mut st) as i64;
        ev.rec_c("statfs", &root, r);
        libc::sync();
    }
    if let Some(f) = ev.rec("open", &root, File::open(mnt)) {
        // SAFETY: `f` is an open fd.
        let r = unsafe { libc::syncfs(f.as_raw_fd()) } as i64;
        ev.rec_c("syncfs", &root, r);
    }
    ev.phase("rewalk", "");
    let _ = walk(mnt, ev, lim);
    ev.flush();
}

/// Depth-first walk: readdir, lstat, and the shape of the tree. Never
/// follows symlinks; bounded in depth and entries (a directory entry may
/// name an ancestor).
fn walk(mnt: &Path, ev: &mut Events, lim: &Limits) -> Tree {
    let mut t = Tree::default();
    let mut stack = vec![(mnt.to_path_buf(), 0usize)];
    let mut seen = 0usize;
    while let Some((dir, depth)) = stack.pop() {
        t.dirs.push(dir.clone());
        let Some(rd) = ev.rec("opendir", &dir, fs::read_dir(&dir)) else {
            continue;
        };
        for ent in rd {
            seen += 1;
            if seen > lim.max_entries {
                break;
            }
            let Some(ent) = ev.rec("readdir", &dir, ent) else {
                break;
            };
            let p = ent.path();
            let Some(md) = ev.rec("lstat", &p, fs::symlink_metadata(&p)) else {
                continue;
            };
            let ft = md.file_type();
            if ft.is_dir() {
                if depth < lim.max_depth {
                    stack.push((p, depth + 1));
                }
            } else if ft.is_symlink() {
                t.symlinks.push(p);
            } else if ft.is_file() {
                t.files.push((p, md.size()));
            }
        }
    }
    t
}

fn read_file(f: &Path, size: u64, ev: &mut Events, lim: &Limits, budget: &mut u64) {
    let Some(mut file) = ev.rec(
        "open",
        f,
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(f),
    ) else {
        return;
    };
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0u64;
    let cap = lim.read_per_file.min(*budget);
    while got < cap {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got += n as u64;
                ev.ok += 1;
            }
            Err(e) => {
                ev.fail("read", errno_of(&e), f);
                break;
            }
        }
    }
    *budget = budget.saturating_sub(got);
    // The last byte, the end, and far past it.
    for off in [size.saturating_sub(1), size, 1 << 40] {
        ev.rec("pread", f, file.read_at(&mut buf[..1], off));
    }
}

/// Up to `n` files to map and write: the largest, then the others in walk
/// order, skipping empty ones for the mapping.
fn choose_files(t: &Tree, n: usize) -> Vec<(PathBuf, u64)> {
    let mut v: Vec<(PathBuf, u64)> = Vec::new();
    if let Some(big) = t.files.iter().max_by_key(|f| f.1) {
        v.push(big.clone());
    }
    for f in &t.files {
        if v.len() >= n {
            break;
        }
        if !v.iter().any(|g| g.0 == f.0) {
            v.push(f.clone());
        }
    }
    v
}

const PAGE: usize = 4096;

/// Map `f` in a grandchild: a SIGBUS or SIGSEGV from a corrupt file kills
/// only it, and is reported.
fn map_in_grandchild(f: &Path, size: u64, ev: &mut Events) {
    ev.flush();
    // SAFETY: the process is single-threaded; the grandchild only makes
    // system calls and exits with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        ev.fail("fork", errno(), f);
        return;
    }
    if pid == 0 {
        // SAFETY: alarm and _exit are async-signal-safe.
        unsafe { libc::alarm(60) };
        map_ops(f, size, ev);
        ev.flush();
        // SAFETY: leaving the grandchild without running the parent's
        // destructors or atexit handlers.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    if r == pid && libc::WIFSIGNALED(status) {
        ev.signal(libc::WTERMSIG(status), f);
    }
}

/// Touch one byte of every page of `p..p+len`, through volatile reads.
fn touch(p: *const u8, len: usize) -> u64 {
    let mut sum = 0u64;
    let mut off = 0;
    while off < len {
        // SAFETY: inside a mapping of `len` bytes; volatile because the
        // kernel may change the bytes (or answer with SIGBUS).
        sum = sum.wrapping_add(unsafe { std::ptr::read_volatile(p.add(off)) } as u64);
        off += PAGE;
    }
    sum
}

fn map_ops(f: &Path, size: u64, ev: &mut Events) {
    let len = size.clamp(1, 4 << 20).next_multiple_of(PAGE as u64) as usize;
    // Shared read.
    if let Some(file) = ev.rec("open", f, File::open(f)) {
        if let Some(p) = mmap(ev, f, &file, len, libc::PROT_READ, libc::MAP_SHARED) {
            std::hint::black_box(touch(p, len));
            munmap(ev, f, p, len);
        }
        // Private mapping, written: copy on write, nothing reaches pmem.
        let plen = len.min(64 * PAGE);
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        if let Some(p) = mmap(ev, f, &file, plen, prot, libc::MAP_PRIVATE) {
            // SAFETY: inside the private mapping.
            unsafe { std::ptr::write_volatile(p, 0x5a) };
            munmap(ev, f, p, plen);
        }
    }
    // Shared write + msync: dirty tracking on a hostile block map.
    let rw = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(f);
    if let Some(file) = ev.rec("open-rw", f, rw) {
        let wlen = len.min(1 << 20);
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        if let Some(p) = mmap(ev, f, &file, wlen, prot, libc::MAP_SHARED) {
            let pages = wlen / PAGE;
            for i in [0, 1, 2, pages / 2, pages - 1] {
                if i < pages {
                    // SAFETY: inside the shared mapping of `wlen` bytes.
                    unsafe { std::ptr::write_volatile(p.add(i * PAGE + 7), 0xa5) };
                }
            }
            // SAFETY: msync of our own mapping.
            let r = unsafe { libc::msync(p.cast(), wlen, libc::MS_SYNC) } as i64;
            ev.rec_c("msync", f, r);
            munmap(ev, f, p as *const u8, wlen);
        }
        ev.rec("fsync", f, file.sync_all());
    }
}

fn mmap(
    ev: &mut Events,
    f: &Path,
    file: &File,
    len: usize,
    prot: i32,
    flags: i32,
) -> Option<*mut u8> {
    // SAFETY: a fresh mapping chosen by the kernel (no MAP_FIXED).
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, file.as_raw_fd(), 0) };
    if p == libc::MAP_FAILED {
        ev.fail("mmap", errno(), f);
        None
    } else {
        ev.ok += 1;
        Some(p.cast())
    }
}

fn munmap(ev: &mut Events, f: &Path, p: *const u8, len: usize) {
    // SAFETY: unmapping a mapping we made, no longer accessed.
    let r = unsafe { libc::munmap(p as *mut libc::c_void, len) } as i64;
    ev.rec_c("munmap", f, r);
}

fn write_ops(f: &Path, size: u64, ev: &mut Events) {
    let data = vec![0x3cu8; 5000];
    let app = OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(f);
    if let Some(file) = ev.rec("open-append", f, app) {
        ev.rec("append", f, file.write_at(&data, 0));
        ev.rec("fdatasync", f, file.sync_data());
    }
    let rw = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(f);
    let Some(file) = ev.rec("open-rw", f, rw) else {
        return;
    };
    let fd = file.as_raw_fd();
    ev.rec("pwrite", f, file.write_at(&data[..100], 4000));
    ev.rec("pwrite", f, file.write_at(&data[..100], size / 2));
    ev.rec("fsync", f, file.sync_all());
    // Truncate down, then up past the old end. Sizes from the medium may
    // not fit an off_t: the kernel sees them as they are.
    for len in [size / 2, size.saturating_add(3 * PAGE as u64 + 5)] {
        // SAFETY: ftruncate on our fd.
        let r = unsafe { libc::ftruncate(fd, len as i64) } as i64;
        ev.rec_c("ftruncate", f, r);
    }
    let fl = [
        (
            "punch",
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            4096i64,
            8192i64,
        ),
        (
            "punch",
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            100,
            5000,
        ),
        ("fallocate", 0, 0, 20000),
        ("fallocate", libc::FALLOC_FL_KEEP_SIZE, 1 << 30, 4096),
    ];
    for (op, mode, off, len) in fl {
        // SAFETY: fallocate on our fd.
        let r = unsafe { libc::fallocate(fd, mode, off, len) } as i64;
        ev.rec_c(op, f, r);
    }
    let mut buf = vec![0u8; 16384];
    ev.rec("pread", f, file.read_at(&mut buf, 0));
    for (op, whence) in [
        ("seek-data", libc::SEEK_DATA),
        ("seek-hole", libc::SEEK_HOLE),
    ] {
        // SAFETY: lseek on our fd.
        let r = unsafe { libc::lseek(fd, 0, whence) };
        ev.rec_c(op, f, r);
    }
    attr_ops(f, ev);
    ev.rec("fsync", f, file.sync_all());
}

/// setattr: mode, owner, times (each a transaction on the inode).
fn attr_ops(p: &Path, ev: &mut Events) {
    use std::os::unix::fs::PermissionsExt;
    ev.rec(
        "chmod",
        p,
        fs::set_permissions(p, fs::Permissions::from_mode(0o640)),
    );
    let c = crate::sys::cstr(p);
    let times = [
        libc::timespec {
            tv_sec: 0x7fff_ffff,
            tv_nsec: 999_999_999,
        },
        libc::timespec {
            tv_sec: 1,
            tv_nsec: libc::UTIME_NOW,
        },
    ];
    // SAFETY: NUL-terminated path and two timespecs, outliving the calls.
    unsafe {
        let r = libc::lchown(c.as_ptr(), 1000, 1000) as i64;
        ev.rec_c("chown", p, r);
        let r = libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) as i64;
        ev.rec_c("utimensat", p, r);
    }
}

/// Namespace operations in directory `d` (the `i`th chosen).
fn name_ops(mnt: &Path, d: &Path, i: usize, t: &Tree, ev: &mut Events) {
    let new = d.join("fz.new");
    let create = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&new);
    if let Some(file) = ev.rec("create", &new, create) {
        ev.rec("write", &new, file.write_at(b"fuzz\n", 0));
    }
    let sub = d.join("fz.dir");
    ev.rec("mkdir", &sub, fs::create_dir(&sub));
    let sym = d.join("fz.sym");
    ev.rec("symlink", &sym, std::os::unix::fs::symlink("fz.new", &sym));
    let lnk = d.join("fz.lnk");
    ev.rec("link", &lnk, fs::hard_link(&new, &lnk));
    let moved = mnt.join(format!("fz.moved{i}"));
    ev.rec("rename", &new, fs::rename(&new, &moved));
    let sub2 = d.join("fz.dir2");
    ev.rec("rename", &sub, fs::rename(&sub, &sub2));
    // An entry that was there: renamed away and back.
    let first = fs::read_dir(d)
        .ok()
        .and_then(|mut r| r.next())
        .and_then(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("fz."))
        });
    if let Some(old) = first {
        let tmp = d.join("fz.ren");
        if ev.rec("rename", &old, fs::rename(&old, &tmp)).is_some() {
            ev.rec("rename", &tmp, fs::rename(&tmp, &old));
        }
    }
    attr_ops(d, ev);
    ev.rec("unlink", &lnk, fs::remove_file(&lnk));
    ev.rec("unlink", &sym, fs::remove_file(&sym));
    ev.rec("rmdir", &sub2, fs::remove_dir(&sub2));
    // Existing objects of this directory: a file over another (the target
    // replaced), then a file removed, a subdirectory removed (may be empty).
    let files: Vec<&PathBuf> = t
        .files
        .iter()
        .map(|f| &f.0)
        .filter(|p| p.parent() == Some(d))
        .collect();
    if files.len() >= 2 {
        ev.rec("rename-over", files[0], fs::rename(files[0], files[1]));
    } else if let Some(f) = files.first() {
        ev.rec("unlink", f, fs::remove_file(f));
    }
    if let Some(s) = t.dirs.iter().find(|p| p.parent() == Some(d)) {
        ev.rec("rmdir", s, fs::remove_dir(s));
    }
    ev.rec("unlink", &moved, fs::remove_file(&moved));
}
