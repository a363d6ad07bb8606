//! `ferrotest crash-workload`: the persistence checker's workload, run with
//! real system calls, with markers around each operation for the trace.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{symlink, FileExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use ferrofs_crashwl::{ops, pattern, Op};

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

fn one(dir: &Path, op: &Op) -> std::io::Result<()> {
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
        Op::Unlink(f) => fs::remove_file(p(f)),
        Op::Link { from, to } => fs::hard_link(p(from), p(to)),
        Op::Symlink { path, target } => symlink(target, p(path)),
        Op::Rmdir(d) => fs::remove_dir(p(d)),
    }
}

pub fn run(seed: u64, count: usize, dir: &Path, marks: Option<&Path>) -> Result<String, String> {
    let list = ops(seed, count);
    for (k, op) in list.iter().enumerate() {
        let k = k as u64;
        mark(marks, 2 * k)?;
        one(dir, op).map_err(|e| format!("operation {k} {op:?}: {e}"))?;
        mark(marks, 2 * k + 1)?;
    }
    Ok(format!(
        "crash-workload: {} operations of seed {seed} done in {}",
        list.len(),
        dir.display()
    ))
}
