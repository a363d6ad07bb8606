//! `ferrotest crash-workload`: the persistence checker's workload, run with
//! real system calls, with markers around each operation for the trace.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{symlink, FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use ferrofs_crashwl::{ops, pattern, Op};

use crate::sys::{persist, Fd, FlushInsn, Map, MAP_SHARED_VALIDATE, MAP_SYNC, PAGE};

fn mark(file: Option<&Path>, v: u64) -> Result<(), String> {
    let Some(f) = file else { return Ok(()) };
    let mut h = OpenOptions::new()
        .write(true)
        .open(f)
        .map_err(|e| format!("{}: {e}", f.display()))?;
    h.write_all(v.to_string().as_bytes())
        .map_err(|e| format!("marker {v} to {}: {e}", f.display()))
}

fn fallocate(f: &File, mode: i32, off: u64, len: u64) -> std::io::Result<()> {
    // SAFETY: fallocate on an open descriptor; no memory is passed.
    let r = unsafe { libc::fallocate(f.as_raw_fd(), mode, off as i64, len as i64) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn io_err(e: String) -> std::io::Error {
    std::io::Error::other(e)
}

/// Op::MapWrite: extend if needed (a committed transaction, durable when
/// ftruncate returns), store through a MAP_SYNC mapping, clwb + sfence. In a
/// traced run (`user` = the mount's `trace_user`), the stores are then
/// reported to the trace at the device offsets FIEMAP gives, as a STORE and
/// FLUSH per piece and one fence, so the crash checker replays them after
/// the faults that allocated their blocks. Without a trace (a host test on
/// a file system without MAP_SYNC) a plain shared mapping and msync stand in.
fn map_write(
    path: &Path,
    off: u64,
    len: u64,
    seed: u64,
    user: Option<&Path>,
) -> std::io::Result<()> {
    let fd = Fd::open_rw(path).map_err(io_err)?;
    let end = off + len;
    if fd.size().map_err(io_err)? < end {
        fd.ftruncate(end).map_err(io_err)?;
    }
    let first = off & !(PAGE as u64 - 1);
    let maplen = (end - first).div_ceil(PAGE as u64) as usize * PAGE;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let (map, sync) = match Map::new_at(&fd, maplen, rw, MAP_SHARED_VALIDATE | MAP_SYNC, first) {
        Ok(m) => (m, true),
        Err(_) if user.is_none() => (
            Map::new_at(&fd, maplen, rw, libc::MAP_SHARED, first).map_err(io_err)?,
            false,
        ),
        Err(e) => return Err(io_err(e)),
    };
    let data: Vec<u8> = (0..len).map(|i| pattern(seed, i)).collect();
    let at = (off - first) as usize;
    map.copy_in(at, &data);
    if sync {
        // SAFETY: `at..at+len` lies inside the live mapping.
        unsafe {
            persist(
                FlushInsn::detect(),
                (map.addr() + at) as *const u8,
                data.len(),
            )
        };
    } else {
        map.msync(0, maplen, libc::MS_SYNC).map_err(io_err)?;
    }
    if let Some(u) = user {
        let ext = fd.fiemap(off, len)?;
        let mut h = OpenOptions::new().write(true).open(u)?;
        for e in &ext {
            let lo = e.logical.max(off);
            let hi = (e.logical + e.len).min(end);
            let mut p = lo;
            while p < hi {
                let n = (hi - p).min(2048);
                let mut rec = (e.physical + (p - e.logical)).to_le_bytes().to_vec();
                rec.extend_from_slice(&data[(p - off) as usize..(p - off + n) as usize]);
                h.write_all(&rec)?;
                p += n;
            }
        }
        h.write_all(&u64::MAX.to_le_bytes())?;
    }
    map.unmap().map_err(io_err)
}

fn one(dir: &Path, op: &Op, user: Option<&Path>) -> std::io::Result<()> {
    let p = |s: &str| dir.join(s);
    let open = |s: &str| OpenOptions::new().write(true).open(p(s));
    match op {
        Op::Mkdir(d) => fs::create_dir(p(d)),
        Op::Create(f) => OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(p(f))
            .map(drop),
        Op::Write {
            path,
            off,
            len,
            seed,
        } => {
            let f = open(path)?;
            let data: Vec<u8> = (0..*len).map(|i| pattern(*seed, i)).collect();
            f.write_all_at(&data, *off)?;
            f.sync_all()
        }
        Op::MapWrite {
            path,
            off,
            len,
            seed,
        } => map_write(&p(path), *off, *len, *seed, user),
        Op::Truncate { path, size } => {
            let f = open(path)?;
            f.set_len(*size)?;
            f.sync_all()
        }
        Op::Fallocate { path, len } => {
            let f = open(path)?;
            fallocate(&f, 0, 0, *len)?;
            f.sync_all()
        }
        Op::Punch { path, off, len } => {
            let f = open(path)?;
            fallocate(
                &f,
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                *off,
                *len,
            )?;
            f.sync_all()
        }
        Op::Rename { from, to } => fs::rename(p(from), p(to)),
        Op::Exchange { a, b } => rename2(&p(a), &p(b), libc::RENAME_EXCHANGE),
        Op::Whiteout { from, to } => rename2(&p(from), &p(to), libc::RENAME_WHITEOUT),
        Op::Unlink(f) => fs::remove_file(p(f)),
        Op::Link { from, to } => fs::hard_link(p(from), p(to)),
        Op::Symlink { path, target } => symlink(target, p(path)),
        Op::Rmdir(d) => fs::remove_dir(p(d)),
        Op::SetXattr {
            path,
            name,
            len,
            seed,
        } => {
            let v: Vec<u8> = (0..*len).map(|i| pattern(*seed, i)).collect();
            let (cp, cn) = (cpath(&p(path))?, cname(name)?);
            // SAFETY: NUL-terminated path and name; `v` is `v.len()` bytes.
            let r =
                unsafe { libc::setxattr(cp.as_ptr(), cn.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
            if r == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        }
        Op::RemoveXattr { path, name } => {
            let (cp, cn) = (cpath(&p(path))?, cname(name)?);
            // SAFETY: NUL-terminated path and name.
            let r = unsafe { libc::removexattr(cp.as_ptr(), cn.as_ptr()) };
            if r == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        }
        Op::SetFlags { path, flags } => set_flags(&p(path), *flags),
        Op::Tmpfile { path, len, seed } => {
            let target = p(path);
            let parent = target
                .parent()
                .ok_or_else(|| std::io::Error::other("no parent"))?;
            let f = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_TMPFILE)
                .mode(0o644)
                .open(parent)?;
            let data: Vec<u8> = (0..*len).map(|i| pattern(*seed, i)).collect();
            f.write_all_at(&data, 0)?;
            f.sync_all()?;
            let from = cpath(Path::new(&format!("/proc/self/fd/{}", f.as_raw_fd())))?;
            let to = cpath(&target)?;
            // SAFETY: two NUL-terminated paths.
            let r = unsafe {
                libc::linkat(
                    libc::AT_FDCWD,
                    from.as_ptr(),
                    libc::AT_FDCWD,
                    to.as_ptr(),
                    libc::AT_SYMLINK_FOLLOW,
                )
            };
            if r == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        }
    }
}

/// FS_IOC_SETFLAGS: the file's immutable and append-only flags become those
/// of `flags` (crashwl's FLAG_*); its other flags stay.
pub fn set_flags(path: &Path, flags: u16) -> std::io::Result<()> {
    let f = File::open(path)?;
    let mut v: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int to `v`.
    if unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut v) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // FS_IMMUTABLE_FL and FS_APPEND_FL (linux/fs.h).
    let (i, a): (libc::c_int, libc::c_int) = (0x10, 0x20);
    v &= !(i | a);
    if flags & ferrofs_crashwl::FLAG_IMMUTABLE != 0 {
        v |= i;
    }
    if flags & ferrofs_crashwl::FLAG_APPEND != 0 {
        v |= a;
    }
    // SAFETY: FS_IOC_SETFLAGS reads one int from `v`.
    if unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_SETFLAGS, &v) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn rename2(a: &Path, b: &Path, flags: libc::c_uint) -> std::io::Result<()> {
    let (ca, cb) = (cpath(a)?, cpath(b)?);
    // SAFETY: two NUL-terminated paths.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            flags,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn cpath(p: &Path) -> std::io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other)
}

fn cname(n: &str) -> std::io::Result<std::ffi::CString> {
    std::ffi::CString::new(n).map_err(std::io::Error::other)
}

pub fn run(seed: u64, count: usize, dir: &Path, marks: Option<&Path>) -> Result<String, String> {
    run_ops(&ops(seed, count), seed, dir, marks)
}

/// `threads` workloads at once ([`ferrofs_crashwl::thread_ops`]), thread t's
/// markers offset by t * 2^32. One thread is [`run`].
pub fn run_threads(
    seed: u64,
    count: usize,
    dir: &Path,
    marks: Option<&Path>,
    threads: usize,
) -> Result<String, String> {
    if threads <= 1 {
        return run(seed, count, dir, marks);
    }
    // The shared file, sized and durable (with its name) before any
    // thread's first marker (ferrofs_crashwl::SHARED).
    let shared = dir.join(ferrofs_crashwl::SHARED);
    let f = fs::File::create(&shared).map_err(|e| format!("{}: {e}", shared.display()))?;
    f.set_len(threads as u64 * ferrofs_crashwl::SHARED_REGION)
        .and_then(|()| f.sync_all())
        .and_then(|()| fs::File::open(dir)?.sync_all())
        .map_err(|e| format!("{}: {e}", shared.display()))?;
    drop(f);
    // The shared directory, durable with its name before any marker too.
    let sd = dir.join(ferrofs_crashwl::SHARED_DIR);
    fs::create_dir(&sd)
        .and_then(|()| fs::File::open(&sd)?.sync_all())
        .and_then(|()| fs::File::open(dir)?.sync_all())
        .map_err(|e| format!("{}: {e}", sd.display()))?;
    let res: Vec<Result<(), String>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let list = ferrofs_crashwl::thread_ops(seed, count, t, threads);
                    run_list(&list, dir, marks, (t as u64) << 32)
                        .map_err(|e| format!("thread {t}: {e}"))
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a workload thread panicked".into()))
            })
            .collect()
    });
    for r in res {
        r?;
    }
    Ok(format!(
        "crash-workload: {threads} threads of {count} operations of seed {seed} done in {}",
        dir.display()
    ))
}

/// [`run`] of a given list (a host test leaves out what its file system
/// cannot do).
pub fn run_ops(list: &[Op], seed: u64, dir: &Path, marks: Option<&Path>) -> Result<String, String> {
    run_list(list, dir, marks, 0)?;
    Ok(format!(
        "crash-workload: {} operations of seed {seed} done in {}",
        list.len(),
        dir.display()
    ))
}

/// Run `list` with markers `base + 2k` and `base + 2k + 1`.
fn run_list(list: &[Op], dir: &Path, marks: Option<&Path>, base: u64) -> Result<(), String> {
    // The user-store report file sits beside the marker file (a host test's
    // marker file has none).
    let user = marks
        .map(|m| m.with_file_name("trace_user"))
        .filter(|u| u.exists());
    for (k, op) in list.iter().enumerate() {
        let k = k as u64;
        mark(marks, base + 2 * k)?;
        one(dir, op, user.as_deref()).map_err(|e| format!("operation {k} {op:?}: {e}"))?;
        mark(marks, base + 2 * k + 1)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrofs_crashwl::{states_of, Model, Node};
    use std::collections::BTreeMap;
    use std::os::unix::fs::MetadataExt;

    /// path -> (inode, what the model calls it, file bytes).
    fn walk(root: &Path, rel: &str, out: &mut BTreeMap<String, (u64, Node, Vec<u8>)>) {
        let p = root.join(rel);
        let md = fs::symlink_metadata(&p).unwrap();
        let entry = if md.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                let name = e.unwrap().file_name().into_string().unwrap();
                walk(root, &format!("{rel}/{name}"), out);
            }
            (md.ino(), Node::Dir, vec![])
        } else if md.file_type().is_symlink() {
            let t = fs::read_link(&p).unwrap().into_os_string();
            (md.ino(), Node::Symlink(t.into_string().unwrap()), vec![])
        } else if std::os::unix::fs::FileTypeExt::is_char_device(&md.file_type()) {
            assert_eq!(
                (md.rdev(), md.mode() & 0o7777),
                (0, 0),
                "{rel}: not a whiteout"
            );
            (md.ino(), Node::Whiteout, vec![])
        } else {
            (md.ino(), Node::File(0), fs::read(&p).unwrap())
        };
        out.insert(rel.to_string(), entry);
    }

    /// The file's `user.` extended attributes, through the xattr crate's
    /// system calls (libc).
    fn xattrs(p: &Path) -> BTreeMap<String, Vec<u8>> {
        let cp = cpath(p).unwrap();
        let mut names = vec![0u8; 65536];
        // SAFETY: NUL-terminated path; `names` is writable for its length.
        let n = unsafe { libc::listxattr(cp.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
        assert!(
            n >= 0,
            "listxattr {}: {}",
            p.display(),
            std::io::Error::last_os_error()
        );
        let mut out = BTreeMap::new();
        for name in names[..n as usize]
            .split(|&b| b == 0)
            .filter(|s| s.starts_with(b"user."))
        {
            let cn = std::ffi::CString::new(name).unwrap();
            let mut v = vec![0u8; 65536];
            // SAFETY: as above.
            let l =
                unsafe { libc::getxattr(cp.as_ptr(), cn.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
            assert!(l >= 0);
            v.truncate(l as usize);
            out.insert(String::from_utf8(name.to_vec()).unwrap(), v);
        }
        out
    }

    fn same(m: &Model, dir: &Path) {
        same_under(m, dir, "w", None)
    }

    /// The tree under `root` is the model's, besides the shared file and
    /// directory; with `t`, so are thread t's names in the shared directory.
    fn same_under(m: &Model, dir: &Path, root: &str, t: Option<usize>) {
        use ferrofs_crashwl::{shared_dir_mine, SHARED, SHARED_DIR};
        let mut got = BTreeMap::new();
        walk(dir, root, &mut got);
        if let Some(t) = t {
            let mut sd = BTreeMap::new();
            walk(dir, SHARED_DIR, &mut sd);
            got.extend(sd.into_iter().filter(|(p, _)| shared_dir_mine(p, t)));
        }
        let keep = |p: &&String| *p != SHARED && *p != SHARED_DIR;
        let want: Vec<_> = m.nodes.keys().filter(keep).collect();
        assert_eq!(got.keys().collect::<Vec<_>>(), want);
        let mut ino_of = BTreeMap::new();
        for (path, node) in m.nodes.iter().filter(|(p, _)| keep(p)) {
            let (ino, kind, bytes) = &got[path];
            match node {
                Node::File(id) => {
                    assert!(matches!(kind, Node::File(_)), "{path}: {kind:?}");
                    assert_eq!(*ino_of.entry(*id).or_insert(*ino), *ino, "{path} links");
                    assert!(Some(bytes) == m.file(path), "{path}: contents differ");
                    assert_eq!(xattrs(&dir.join(path)), m.xattrs_of(path), "{path}: xattrs");
                }
                n => assert_eq!(kind, n, "{path}"),
            }
        }
        let inos: std::collections::BTreeSet<_> = ino_of.values().collect();
        assert_eq!(inos.len(), ino_of.len(), "distinct files share an inode");
    }

    #[test]
    fn two_threads_on_a_host_filesystem_leave_each_models_tree_and_region() {
        use ferrofs_crashwl::{
            states_from, thread_ops, thread_root, thread_start, SHARED, SHARED_REGION,
        };
        let dir = std::env::temp_dir().join(format!("crashrun2-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let probe = dir.join("probe");
        File::create(&probe).unwrap();
        let can_flag = set_flags(&probe, ferrofs_crashwl::FLAG_APPEND).is_ok();
        let _ = set_flags(&probe, 0);
        if !can_flag {
            // The thread workloads set chattr flags (CAP_LINUX_IMMUTABLE).
            eprintln!("skipped: chattr is refused here");
            let _ = fs::remove_dir_all(&dir);
            return;
        }
        let run_dir = dir.join("fs");
        fs::create_dir_all(&run_dir).unwrap();
        let (seed, n) = (77, 150);
        let r = run_threads(seed, n, &run_dir, None, 2);
        assert!(r.is_ok(), "{r:?}");
        let shared = fs::read(run_dir.join(SHARED)).unwrap();
        assert_eq!(shared.len() as u64, 2 * SHARED_REGION);
        for t in 0..2 {
            let m = states_from(thread_start(2), &thread_ops(seed, n, t, 2))
                .pop()
                .unwrap();
            assert!(
                m.nodes
                    .keys()
                    .any(|p| ferrofs_crashwl::shared_dir_mine(p, t)),
                "thread {t} leaves no name in the shared directory"
            );
            same_under(&m, &run_dir, &thread_root(t), Some(t));
            let (lo, hi) = (
                (t as u64 * SHARED_REGION) as usize,
                ((t as u64 + 1) * SHARED_REGION) as usize,
            );
            let want = m.file(SHARED).unwrap();
            assert!(
                shared[lo..hi] == want[lo..hi],
                "thread {t}: its region of the shared file differs"
            );
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_workload_on_a_host_filesystem_leaves_the_models_tree() {
        for (seed, n) in [(20261125, 300), (1, 57), (2, 140), (3, 400)] {
            let dir = std::env::temp_dir().join(format!("crashrun-{}-{seed}", std::process::id()));
            fs::create_dir_all(&dir).unwrap();
            let mark = dir.join("mark");
            File::create(&mark).unwrap();
            let run_dir = dir.join("fs");
            fs::create_dir_all(&run_dir).unwrap();
            // chattr needs CAP_LINUX_IMMUTABLE and a file system with flags:
            // without them the flag operations are left out.
            let probe = dir.join("probe");
            File::create(&probe).unwrap();
            let can_flag = set_flags(&probe, ferrofs_crashwl::FLAG_APPEND).is_ok();
            let _ = set_flags(&probe, 0);
            let list: Vec<Op> = ops(seed, n)
                .into_iter()
                .filter(|op| can_flag || !matches!(op, Op::SetFlags { .. }))
                .collect();
            let n = list.len();
            let r = run_ops(&list, seed, &run_dir, Some(&mark));
            let last_mark = fs::read_to_string(&mark).unwrap();
            let st = states_of(&list);
            same(&st[n], &run_dir);
            let _ = fs::remove_dir_all(&dir);
            assert!(r.is_ok(), "{r:?}");
            assert_eq!(last_mark, (2 * n - 1).to_string());
        }
    }
}
