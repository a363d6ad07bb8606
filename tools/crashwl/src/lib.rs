//! The workload of the persistence-order checker and its model.
//!
//! [`ops`] turns a seed into a sequence of file-system operations, each valid
//! in the state the previous ones leave: create, mkdir, write, truncate,
//! rename (also over an existing file and across directories), unlink, hard
//! link, symlink, rmdir, fallocate, hole punch, stores through a MAP_SYNC
//! mapping made durable from user space, and setting and removing extended
//! attributes, all under `w/`. `ferrotest
//! crash-workload` runs them on ferrofs; `ferrocrash` replays the module's
//! trace and compares every crash state with [`Model`], the tree expected
//! before and after each operation.

use std::collections::BTreeMap;

/// Keeps the live data well inside a 16 MiB filesystem.
const MAX_DATA: u64 = 4 << 20;
const MAX_FILE: u64 = 300_000;
/// One PMD extent (2 MiB).
const HUGE: u64 = 2 << 20;

/// One operation; paths are relative to the workload's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Mkdir(String),
    Create(String),
    /// pwrite of `len` bytes of [`pattern`]`(seed, i)` at `off`, then fsync.
    Write {
        path: String,
        off: u64,
        len: u64,
        seed: u64,
    },
    /// Store `len` bytes of [`pattern`]`(seed, i)` at `off` through a
    /// MAP_SYNC mapping, extending the file first (ftruncate) if it is
    /// shorter, and make them durable from user space only (clwb + sfence):
    /// no msync, fsync or any other call after the stores.
    MapWrite {
        path: String,
        off: u64,
        len: u64,
        seed: u64,
    },
    /// ftruncate to `size`, then fsync.
    Truncate {
        path: String,
        size: u64,
    },
    Rename {
        from: String,
        to: String,
    },
    /// renameat2(RENAME_WHITEOUT) of a file to a new name: the old name is
    /// left as a whiteout (a character device 0:0), in one transaction.
    Whiteout {
        from: String,
        to: String,
    },
    /// renameat2(RENAME_EXCHANGE) of two existing names (files or
    /// symlinks): one transaction swaps what they point at.
    Exchange {
        a: String,
        b: String,
    },
    Unlink(String),
    Link {
        from: String,
        to: String,
    },
    Symlink {
        path: String,
        target: String,
    },
    Rmdir(String),
    /// fallocate(mode 0, 0, len), then fsync: extends to `len` if shorter.
    Fallocate {
        path: String,
        len: u64,
    },
    /// fallocate(PUNCH_HOLE | KEEP_SIZE, off, len), then fsync.
    Punch {
        path: String,
        off: u64,
        len: u64,
    },
    /// setxattr(`name`, `len` bytes of [`pattern`]`(seed, i)`); durable when
    /// it returns, like every metadata operation.
    SetXattr {
        path: String,
        name: String,
        len: u64,
        seed: u64,
    },
    /// removexattr(`name`) of a name the file has.
    RemoveXattr {
        path: String,
        name: String,
    },
    /// FS_IOC_SETFLAGS (chattr): the file's flags become `flags`
    /// ([`FLAG_IMMUTABLE`], [`FLAG_APPEND`] or 0), in one transaction. While
    /// a file has a flag the workload changes neither it nor its names; it
    /// clears every flag before it ends.
    SetFlags {
        path: String,
        flags: u16,
    },
    /// open(O_TMPFILE) in `path`'s directory, `len` bytes of
    /// [`pattern`]`(seed, i)` written and fsynced, then linkat to `path`:
    /// the file appears whole or not at all (an unnamed one is an orphan,
    /// freed by the next mount).
    Tmpfile {
        path: String,
        len: u64,
        seed: u64,
    },
}

/// chattr +i, as stored in the inode (`format::INODE_FL_IMMUTABLE`).
pub const FLAG_IMMUTABLE: u16 = 1;
/// chattr +a (`format::INODE_FL_APPEND`).
pub const FLAG_APPEND: u16 = 2;

impl Op {
    /// The file whose bytes the operation changes (data is not journaled:
    /// a crash inside it may leave any mix of old and new bytes).
    pub fn data_target(&self) -> Option<&str> {
        match self {
            Op::Write { path, .. }
            | Op::MapWrite { path, .. }
            | Op::Truncate { path, .. }
            | Op::Fallocate { path, .. }
            | Op::Punch { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// Byte `i` of the data written by a `Write` with `seed`.
pub fn pattern(seed: u64, i: u64) -> u8 {
    let x = splitmix(seed ^ (i / 8).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    (x >> ((i % 8) * 8)) as u8
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(1);
        splitmix(self.0)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> Option<&'a T> {
        if v.is_empty() {
            None
        } else {
            v.get(self.below(v.len() as u64) as usize)
        }
    }
}

/// A node of the expected tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir,
    /// A regular file: its identity (shared by hard links).
    File(u32),
    Symlink(String),
    /// What RENAME_WHITEOUT leaves: a character device 0:0, mode 0.
    Whiteout,
}

/// The expected tree: paths under the workload directory, and file contents
/// by identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    pub nodes: BTreeMap<String, Node>,
    pub files: BTreeMap<u32, Vec<u8>>,
    /// Extended attributes by file identity (only files that have some).
    pub xattrs: BTreeMap<u32, BTreeMap<String, Vec<u8>>>,
    /// chattr flags by file identity (only files that have some).
    pub flags: BTreeMap<u32, u16>,
    next_id: u32,
}

impl Model {
    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::Mkdir(p) => {
                self.nodes.insert(p.clone(), Node::Dir);
            }
            Op::Create(p) => {
                self.next_id += 1;
                self.files.insert(self.next_id, Vec::new());
                self.nodes.insert(p.clone(), Node::File(self.next_id));
            }
            Op::Write {
                path,
                off,
                len,
                seed,
            }
            | Op::MapWrite {
                path,
                off,
                len,
                seed,
            } => {
                if let Some(f) = self.file_mut(path) {
                    let end = (off + len) as usize;
                    if f.len() < end {
                        f.resize(end, 0);
                    }
                    for i in 0..*len {
                        f[(off + i) as usize] = pattern(*seed, i);
                    }
                }
            }
            Op::Truncate { path, size } => {
                if let Some(f) = self.file_mut(path) {
                    f.resize(*size as usize, 0);
                }
            }
            Op::Fallocate { path, len } => {
                if let Some(f) = self.file_mut(path) {
                    if (f.len() as u64) < *len {
                        f.resize(*len as usize, 0);
                    }
                }
            }
            Op::Punch { path, off, len } => {
                if let Some(f) = self.file_mut(path) {
                    let end = ((off + len) as usize).min(f.len());
                    for b in f.iter_mut().take(end).skip(*off as usize) {
                        *b = 0;
                    }
                }
            }
            Op::Rename { from, to } => {
                if let Some(n) = self.nodes.remove(from) {
                    self.drop_path(to);
                    self.nodes.insert(to.clone(), n);
                }
            }
            Op::Whiteout { from, to } => {
                if let Some(n) = self.nodes.remove(from) {
                    self.nodes.insert(to.clone(), n);
                    self.nodes.insert(from.clone(), Node::Whiteout);
                }
            }
            Op::Exchange { a, b } => {
                if let (Some(na), Some(nb)) = (self.nodes.remove(a), self.nodes.remove(b)) {
                    self.nodes.insert(a.clone(), nb);
                    self.nodes.insert(b.clone(), na);
                }
            }
            Op::Unlink(p) => self.drop_path(p),
            Op::Link { from, to } => {
                if let Some(n) = self.nodes.get(from).cloned() {
                    self.nodes.insert(to.clone(), n);
                }
            }
            Op::Symlink { path, target } => {
                self.nodes
                    .insert(path.clone(), Node::Symlink(target.clone()));
            }
            Op::Rmdir(p) => {
                self.nodes.remove(p);
            }
            Op::SetXattr {
                path,
                name,
                len,
                seed,
            } => {
                if let Some(Node::File(id)) = self.nodes.get(path) {
                    let v = (0..*len).map(|i| pattern(*seed, i)).collect();
                    self.xattrs.entry(*id).or_default().insert(name.clone(), v);
                }
            }
            Op::RemoveXattr { path, name } => {
                if let Some(Node::File(id)) = self.nodes.get(path) {
                    if let Some(x) = self.xattrs.get_mut(id) {
                        x.remove(name);
                        if x.is_empty() {
                            self.xattrs.remove(id);
                        }
                    }
                }
            }
            Op::SetFlags { path, flags } => {
                if let Some(Node::File(id)) = self.nodes.get(path) {
                    if *flags == 0 {
                        self.flags.remove(id);
                    } else {
                        self.flags.insert(*id, *flags);
                    }
                }
            }
            Op::Tmpfile { path, len, seed } => {
                self.next_id += 1;
                let v = (0..*len).map(|i| pattern(*seed, i)).collect();
                self.files.insert(self.next_id, v);
                self.nodes.insert(path.clone(), Node::File(self.next_id));
            }
        }
    }

    /// The chattr flags of the file at `path` (0 if none or not a file).
    pub fn flags_of(&self, path: &str) -> u16 {
        match self.nodes.get(path) {
            Some(Node::File(id)) => self.flags.get(id).copied().unwrap_or(0),
            _ => 0,
        }
    }

    /// The extended attributes of the file at `path` (empty if none).
    pub fn xattrs_of(&self, path: &str) -> BTreeMap<String, Vec<u8>> {
        match self.nodes.get(path) {
            Some(Node::File(id)) => self.xattrs.get(id).cloned().unwrap_or_default(),
            _ => BTreeMap::new(),
        }
    }

    fn file_mut(&mut self, path: &str) -> Option<&mut Vec<u8>> {
        match self.nodes.get(path) {
            Some(Node::File(id)) => self.files.get_mut(id),
            _ => None,
        }
    }

    /// The contents of the file at `path`, if it is one.
    pub fn file(&self, path: &str) -> Option<&Vec<u8>> {
        match self.nodes.get(path) {
            Some(Node::File(id)) => self.files.get(id),
            _ => None,
        }
    }

    fn drop_path(&mut self, p: &str) {
        if let Some(Node::File(id)) = self.nodes.remove(p) {
            if !self.nodes.values().any(|n| *n == Node::File(id)) {
                self.files.remove(&id);
                self.xattrs.remove(&id);
                self.flags.remove(&id);
            }
        }
    }

    fn paths(&self, want: impl Fn(&Node) -> bool) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, n)| want(n))
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn data(&self) -> u64 {
        self.files.values().map(|f| f.len() as u64).sum()
    }

    fn is_empty_dir(&self, d: &str) -> bool {
        let prefix = format!("{d}/");
        !self.nodes.keys().any(|p| p.starts_with(&prefix))
    }
}

/// `count` operations from `seed`. The first two make `w` and `w/many` (the
/// directory that grows past one block of 16 entries).
pub fn ops(seed: u64, count: usize) -> Vec<Op> {
    ops_in(seed, count, "w")
}

/// The file every thread of a run with several writes to and punches, each
/// only in its own region of [`SHARED_REGION`] bytes (thread t's starts at
/// t * [`SHARED_REGION`]): transactions of two threads then change one inode
/// (its block map and block count), which one transaction owns until it
/// commits (`journal::Tx::lock_inode`). The driver makes it, sized, and
/// fsyncs it before the first operation of any thread.
pub const SHARED: &str = "shared";
pub const SHARED_REGION: u64 = 128 << 10;

/// The directory every thread of a run with several creates, renames and
/// unlinks names in, each only names of its own ([`shared_dir_mine`]):
/// transactions of two threads then change one directory (its blocks, size
/// and times) and the VFS's directory lock is all that orders them. The
/// driver makes it, durable, before the first operation of any thread.
pub const SHARED_DIR: &str = "sd";

/// Whether `path` is one of thread `t`'s names in [`SHARED_DIR`].
pub fn shared_dir_mine(path: &str, t: usize) -> bool {
    path.strip_prefix(SHARED_DIR)
        .and_then(|r| r.strip_prefix('/'))
        .and_then(|r| r.strip_prefix('t'))
        .and_then(|r| r.strip_prefix(t.to_string().as_str()))
        .is_some_and(|r| r.starts_with('-'))
}

/// The tree every thread's model starts from in a run of `threads`: the
/// shared file, all zeros, and the empty shared directory for more than
/// one thread; empty for one.
pub fn thread_start(threads: usize) -> Model {
    let mut m = Model::default();
    if threads > 1 {
        m.apply(&Op::Create(SHARED.into()));
        m.apply(&Op::Truncate {
            path: SHARED.into(),
            size: threads as u64 * SHARED_REGION,
        });
        m.apply(&Op::Mkdir(SHARED_DIR.into()));
    }
    m
}

/// The workload of thread `t` of a run of `threads` (`ferrotest
/// crash-workload --threads`): its own top directory ([`thread_root`]) and
/// seed, so the threads' trees never meet; with more than one thread, a
/// third of the operations are on the thread's region of [`SHARED`]: a
/// store through a MAP_SYNC mapping (half of them: its write faults
/// allocate without the VFS inode lock, so only inode ownership keeps two
/// threads' transactions on the file apart), a pwrite + fsync or a hole
/// punch (a quarter each); a sixth are on the thread's names in
/// [`SHARED_DIR`]: create, symlink, rename to a new name, unlink, rename
/// out into the thread's own top directory and back (half of those back
/// over one of its names there); one new name in eight takes two directory
/// slots. The other half is the
/// thread's own tree; one shared operation follows each own one.
pub fn thread_ops(seed: u64, count: usize, t: usize, threads: usize) -> Vec<Op> {
    let seed = seed.wrapping_add(t as u64);
    let root = thread_root(t);
    if threads <= 1 {
        return ops_in(seed, count, &root);
    }
    let n_shared = count / 3;
    let n_dir = count / 6;
    let own = ops_in(seed, count - n_shared - n_dir, &root);
    let mut rng = Rng(seed ^ 0x5348_4152_4544 ^ ((t as u64) << 40));
    let base = t as u64 * SHARED_REGION;
    let end = base + SHARED_REGION;
    let mut out = Vec::with_capacity(count);
    let mut shared = 0;
    let shared_op = |k: usize, rng: &mut Rng| {
        let page = rng.below(SHARED_REGION / 4096) * 4096;
        let off = base + page + rng.below(64);
        let len = (1 + rng.below(3 * 4096)).min(end - off);
        let seed = seed ^ ((k as u64) << 20) ^ 0x5357;
        match rng.below(4) {
            0 => Op::Punch {
                path: SHARED.into(),
                off: base + page,
                len: (4096 * (1 + rng.below(8))).min(end - base - page),
            },
            1 => Op::Write {
                path: SHARED.into(),
                off,
                len,
                seed,
            },
            _ => Op::MapWrite {
                path: SHARED.into(),
                off,
                len,
                seed,
            },
        }
    };
    // Thread t's names in the shared directory, the names it moved from
    // there into its own top directory (`{root}/s{t}-k`: the own workload's
    // names start with `n`), and the next number.
    let mut names: Vec<String> = Vec::new();
    let mut moved: Vec<String> = Vec::new();
    let mut next = 0u32;
    let mut dir_op = |rng: &mut Rng| {
        next += 1;
        // One new name in eight (every eighth) takes two slots.
        let long = next % 8 == 3;
        let len = 249 + rng.below(7) as usize;
        let name_in = |dir: &str, short: String| {
            if long {
                format!("{short}-{}", "l".repeat(len - (short.len() - dir.len())))
            } else {
                short
            }
        };
        let fresh = name_in(SHARED_DIR, format!("{SHARED_DIR}/t{t}-{next}"));
        let pick = if names.is_empty() {
            None
        } else {
            Some(rng.below(names.len() as u64) as usize)
        };
        let pick_moved = if moved.is_empty() {
            None
        } else {
            Some(rng.below(moved.len() as u64) as usize)
        };
        match (rng.below(6), pick, pick_moved) {
            (2, Some(i), _) => {
                let from = std::mem::replace(&mut names[i], fresh.clone());
                Op::Rename { from, to: fresh }
            }
            (3, Some(i), _) => Op::Unlink(names.swap_remove(i)),
            // Out of the shared directory into the thread's own tree: one
            // transaction changes a directory the other threads change too
            // and one only this thread does.
            (4, Some(i), _) => {
                let to = name_in(&root, format!("{root}/s{t}-{next}"));
                moved.push(to.clone());
                Op::Rename {
                    from: names.swap_remove(i),
                    to,
                }
            }
            // And back, half of the time over one of its names there (the
            // replaced file or symlink is freed in the same transaction).
            (5, _, Some(j)) => {
                let from = moved.swap_remove(j);
                match pick {
                    Some(i) if rng.below(2) == 0 => Op::Rename {
                        from,
                        to: names[i].clone(),
                    },
                    _ => {
                        names.push(fresh.clone());
                        Op::Rename { from, to: fresh }
                    }
                }
            }
            (1, _, _) => {
                names.push(fresh.clone());
                Op::Symlink {
                    path: fresh,
                    target: format!("target-{}", rng.below(1 << 20)),
                }
            }
            _ => {
                names.push(fresh.clone());
                Op::Create(fresh)
            }
        }
    };
    let (mut dirs, mut k) = (0, 0usize);
    // One shared operation (file, file, directory, ... while both last);
    // false when none is left.
    let mut extra = |out: &mut Vec<Op>, rng: &mut Rng| {
        let want_dir = (k % 3 == 2 && dirs < n_dir) || shared >= n_shared;
        k += 1;
        if want_dir && dirs < n_dir {
            out.push(dir_op(rng));
            dirs += 1;
        } else if shared < n_shared {
            out.push(shared_op(out.len(), rng));
            shared += 1;
        } else {
            return false;
        }
        true
    };
    for (j, op) in own.into_iter().enumerate() {
        out.push(op);
        if j >= 1 {
            extra(&mut out, &mut rng);
        }
    }
    while extra(&mut out, &mut rng) {}
    out
}

/// Thread `t`'s top directory: `w` for thread 0 (the single-thread
/// workload's), `w1`, `w2`, ... for the others.
pub fn thread_root(t: usize) -> String {
    if t == 0 {
        "w".to_string()
    } else {
        format!("w{t}")
    }
}

/// [`ops`] under the top directory `root` (and `root/many`).
pub fn ops_in(seed: u64, count: usize, root: &str) -> Vec<Op> {
    let many = format!("{root}/many");
    let mut rng = Rng(seed);
    let mut m = Model::default();
    let mut out = Vec::with_capacity(count);
    let mut name = 0u32;
    let push = |op: Op, m: &mut Model, out: &mut Vec<Op>| {
        m.apply(&op);
        out.push(op);
    };
    for p in [root, many.as_str()] {
        if out.len() < count {
            push(Op::Mkdir(p.into()), &mut m, &mut out);
        }
    }
    // Room is kept at the end for clearing every flag set.
    while out.len() + m.flags.len() < count {
        name += 1;
        let dirs = m.paths(|n| *n == Node::Dir);
        // Files with a chattr flag are left alone (the kernel refuses to
        // change them or their names) until a SetFlags clears it.
        let flagged = m.paths(|n| matches!(n, Node::File(id) if m.flags.contains_key(id)));
        let files = m.paths(|n| matches!(n, Node::File(id) if !m.flags.contains_key(id)));
        let dir = rng.pick(&dirs).cloned().unwrap_or_else(|| root.into());
        // One new name in eight is 249 to 255 bytes: two directory slots.
        let fresh = match rng.below(8) {
            0 => {
                let short = format!("n{name}-");
                let len = 249 + rng.below(7) as usize;
                format!("{dir}/{short}{}", "l".repeat(len - short.len()))
            }
            _ => format!("{dir}/n{name}"),
        };
        let file = rng.pick(&files).cloned();
        let size = file
            .as_deref()
            .and_then(|f| m.file(f))
            .map_or(0, |f| f.len() as u64);
        let full = m.data() > MAX_DATA;
        let others = m.paths(|n| matches!(n, Node::Symlink(_) | Node::Whiteout));
        let op_kind = rng.below(100);
        let op = match op_kind {
            0..=11 => Some(Op::Create(fresh)),
            12 | 13 => match rng.pick(&flagged).cloned() {
                Some(path) if rng.below(2) == 0 => Some(Op::SetFlags { path, flags: 0 }),
                _ => file.map(|path| Op::SetFlags {
                    flags: if rng.below(2) == 0 {
                        FLAG_IMMUTABLE
                    } else {
                        FLAG_APPEND
                    },
                    path,
                }),
            },
            14 if !full => Some(Op::Tmpfile {
                path: fresh,
                len: rng.below(20_000),
                seed: seed ^ ((out.len() as u64) << 20) ^ 0x544d,
            }),
            15..=19 if dirs.len() < 8 => Some(Op::Mkdir(fresh)),
            20..=39 if !full => file.map(|path| {
                let off = rng.below((size + 8192).min(MAX_FILE));
                let len = 1 + rng.below(20_000).min(MAX_FILE - off);
                Op::Write {
                    path,
                    off,
                    len,
                    seed: seed ^ ((out.len() as u64) << 20),
                }
            }),
            40..=46 => file.map(|path| Op::Truncate {
                size: rng.below(if full {
                    size + 1
                } else {
                    (2 * size + 4096).min(MAX_FILE)
                }),
                path,
            }),
            // Four in seven unlinks, one in ten renames and one in four hard
            // links are of a symlink (or, for unlink, a whiteout) when there
            // is one: a symlink's target block is freed, then its inode.
            60..=63 | 56 | 67 if !others.is_empty() => {
                let name = rng.pick(&others).cloned();
                let symlink = |p: &String| matches!(m.nodes.get(p), Some(Node::Symlink(_)));
                match op_kind {
                    56 => name
                        .filter(symlink)
                        .map(|from| Op::Rename { from, to: fresh }),
                    67 => name
                        .filter(symlink)
                        .map(|from| Op::Link { from, to: fresh }),
                    _ => name.map(Op::Unlink),
                }
            }
            47..=56 => file.map(|from| {
                // A third of renames replace another file.
                let other = files
                    .iter()
                    .filter(|f| **f != from && m.nodes.get(*f) != m.nodes.get(&from))
                    .cloned()
                    .collect::<Vec<_>>();
                let to = match rng.below(3) {
                    0 => rng.pick(&other).cloned().unwrap_or(fresh),
                    _ => fresh,
                };
                Op::Rename { from, to }
            }),
            57..=63 => file.map(Op::Unlink),
            64..=67 => file.map(|from| Op::Link { from, to: fresh }),
            68..=71 => Some(Op::Symlink {
                path: fresh,
                target: format!("target-{}", rng.below(1 << 20)),
            }),
            72..=75 => {
                let empty: Vec<String> = dirs
                    .iter()
                    .filter(|d| d.as_str() != root && *d != &many && m.is_empty_dir(d))
                    .cloned()
                    .collect();
                rng.pick(&empty).cloned().map(Op::Rmdir)
            }
            76..=80 if !full => file.map(|path| Op::Fallocate {
                len: (size + 1 + rng.below(40_000)).min(MAX_FILE),
                path,
            }),
            81..=85 => file.filter(|_| size > 0).map(|path| {
                let off = rng.below(size);
                Op::Punch {
                    len: 1 + rng.below(size - off + 4096),
                    off,
                    path,
                }
            }),
            86..=91 if !full => file.map(|path| {
                let off = rng.below((size + 8192).min(MAX_FILE));
                let len = 1 + rng.below(12_000).min(MAX_FILE - off);
                Op::MapWrite {
                    path,
                    off,
                    len,
                    seed: seed ^ ((out.len() as u64) << 20) ^ 0x4d53,
                }
            }),
            // A whole 2 MiB extent: MapWrite of the second 2 MiB of a file
            // shorter than that (all holes), mapped with a PMD and
            // allocated as one aligned group.
            // Then a truncate through that extent (its PMD dirty state goes
            // partly to 4 KiB entries) and one back to a small size.
            92..=93 if m.data() < (1 << 20) && out.len() + 3 <= count => {
                if let Some(path) = file.filter(|_| size < HUGE) {
                    let op = Op::MapWrite {
                        path: path.clone(),
                        off: HUGE,
                        len: HUGE,
                        seed: seed ^ ((out.len() as u64) << 20) ^ 0x504d,
                    };
                    push(op, &mut m, &mut out);
                    let cut = HUGE + 1 + rng.below(HUGE - 1);
                    push(
                        Op::Truncate {
                            path: path.clone(),
                            size: cut,
                        },
                        &mut m,
                        &mut out,
                    );
                    Some(Op::Truncate {
                        path,
                        size: rng.below(MAX_FILE),
                    })
                } else {
                    None
                }
            }
            // Extended attributes: up to 4 names of up to 900 bytes each
            // (they fit one block); half the time, when some file has
            // some, a removal from one of those.
            94..=96 => {
                let with: Vec<String> = files
                    .iter()
                    .filter(|f| !m.xattrs_of(f).is_empty())
                    .cloned()
                    .collect();
                match rng.pick(&with).cloned() {
                    Some(path) if rng.below(2) == 0 => {
                        let names: Vec<String> = m.xattrs_of(&path).keys().cloned().collect();
                        rng.pick(&names)
                            .cloned()
                            .map(|name| Op::RemoveXattr { path, name })
                    }
                    _ => file.map(|path| Op::SetXattr {
                        name: format!("user.k{}", rng.below(4)),
                        len: rng.below(900),
                        seed: seed ^ ((out.len() as u64) << 20) ^ 0x5841,
                        path,
                    }),
                }
            }
            // A file renamed to a new name, a whiteout left behind.
            98 => file.map(|from| Op::Whiteout { from, to: fresh }),
            // Two names swapped (a file and a symlink, two files, two
            // names of different directories, a whiteout).
            97 => {
                let names = m.paths(|n| {
                    !matches!(n, Node::Dir)
                        && !matches!(n, Node::File(id) if m.flags.contains_key(id))
                });
                match (rng.pick(&names).cloned(), rng.pick(&names).cloned()) {
                    (Some(a), Some(b)) if a != b => Some(Op::Exchange { a, b }),
                    _ => None,
                }
            }
            _ => Some(Op::Create(format!("{many}/n{name}"))),
        };
        if let Some(op) = op {
            push(op, &mut m, &mut out);
        }
    }
    // Clear every flag (one name per file), so the tree can be removed.
    let ids: Vec<u32> = m.flags.keys().copied().collect();
    for id in ids {
        if let Some(path) = m
            .nodes
            .iter()
            .find(|(_, n)| **n == Node::File(id))
            .map(|(p, _)| p.clone())
        {
            push(Op::SetFlags { path, flags: 0 }, &mut m, &mut out);
        }
    }
    out
}

/// The model before any operation of [`ops`]`(seed, count)` (index 0) and
/// after each (index k + 1).
pub fn states(seed: u64, count: usize) -> Vec<Model> {
    states_of(&ops(seed, count))
}

/// The model before any of `ops` (index 0) and after each (index k + 1).
pub fn states_of(ops: &[Op]) -> Vec<Model> {
    states_from(Model::default(), ops)
}

/// [`states_of`] from the tree `start` (see [`thread_start`]).
pub fn states_from(start: Model, ops: &[Op]) -> Vec<Model> {
    let mut m = start;
    let mut v = vec![m.clone()];
    for op in ops {
        m.apply(op);
        v.push(m.clone());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_operations() {
        assert_eq!(ops(7, 300), ops(7, 300));
        assert_ne!(ops(7, 300), ops(8, 300));
    }

    #[test]
    fn every_kind_of_operation_appears_in_300_operations() {
        let v = ops(20261125, 300);
        let kinds: std::collections::HashSet<_> = v.iter().map(std::mem::discriminant).collect();
        assert_eq!(kinds.len(), 18, "{v:?}");
    }

    #[test]
    fn the_default_workload_writes_a_whole_2_mib_extent_and_cuts_it() {
        // make check's seed (tests/50-persist.sh).
        let v = ops(20261125, 300);
        let k = v
            .iter()
            .position(|op| matches!(op, Op::MapWrite { len, .. } if *len == HUGE))
            .expect("no 2 MiB MapWrite");
        assert!(matches!(&v[k + 1], Op::Truncate { size, .. } if *size > HUGE && *size < 2 * HUGE));
    }

    #[test]
    fn live_data_stays_under_6_mib_at_every_step() {
        for seed in [1, 2, 20261125] {
            let mut m = Model::default();
            for (k, op) in ops(seed, 2000).iter().enumerate() {
                m.apply(op);
                assert!(m.data() < 6 << 20, "seed {seed} op {k}: {} bytes", m.data());
            }
        }
    }

    #[test]
    fn states_start_empty_and_follow_each_operation() {
        let v = ops(3, 50);
        let st = states(3, 50);
        assert_eq!(st.len(), 51);
        assert_eq!(st[0], Model::default());
        let mut m = Model::default();
        for (k, op) in v.iter().enumerate() {
            m.apply(op);
            assert_eq!(st[k + 1], m, "after op {k} {op:?}");
        }
        assert_eq!(st[1].nodes.get("w"), Some(&Node::Dir));
    }

    #[test]
    fn one_directory_grows_past_one_block() {
        let v = ops(1, 400);
        let m = states_of(&v).pop().unwrap_or_default();
        let n = m.nodes.keys().filter(|p| p.starts_with("w/many/")).count();
        assert!(n > 16, "only {n} entries in w/many");
    }

    #[test]
    fn operations_are_valid_in_the_state_they_run_in() {
        for seed in [99, 20261125] {
            let v = ops(seed, 500);
            let mut m = Model::default();
            for op in &v {
                match op {
                    Op::Write { path, .. }
                    | Op::MapWrite { path, .. }
                    | Op::Truncate { path, .. }
                    | Op::Fallocate { path, .. }
                    | Op::Punch { path, .. } => assert!(m.file(path).is_some(), "{op:?}"),
                    Op::Unlink(path) => assert!(
                        matches!(
                            m.nodes.get(path),
                            Some(Node::File(_) | Node::Symlink(_) | Node::Whiteout)
                        ),
                        "{op:?}"
                    ),
                    Op::Create(p) | Op::Mkdir(p) | Op::Symlink { path: p, .. } => {
                        assert!(!m.nodes.contains_key(p), "{op:?}")
                    }
                    Op::Link { from, to } => {
                        assert!(
                            matches!(m.nodes.get(from), Some(Node::File(_) | Node::Symlink(_)))
                                && !m.nodes.contains_key(to),
                            "{op:?}"
                        )
                    }
                    Op::Rename { from, .. } => assert!(
                        matches!(m.nodes.get(from), Some(Node::File(_) | Node::Symlink(_))),
                        "{op:?}"
                    ),
                    Op::Whiteout { from, to } => {
                        assert!(
                            m.file(from).is_some() && !m.nodes.contains_key(to),
                            "{op:?}"
                        )
                    }
                    Op::Exchange { a, b } => assert!(
                        a != b && m.nodes.contains_key(a) && m.nodes.contains_key(b),
                        "{op:?}"
                    ),
                    Op::Rmdir(p) => assert!(m.is_empty_dir(p), "{op:?}"),
                    Op::SetXattr { path, .. } => assert!(m.file(path).is_some(), "{op:?}"),
                    Op::RemoveXattr { path, name } => {
                        assert!(m.xattrs_of(path).contains_key(name), "{op:?}")
                    }
                    Op::SetFlags { path, .. } => assert!(m.file(path).is_some(), "{op:?}"),
                    Op::Tmpfile { path, .. } => assert!(!m.nodes.contains_key(path), "{op:?}"),
                }
                // Nothing but SetFlags touches a flagged file or its names.
                if !matches!(op, Op::SetFlags { .. }) {
                    let touched: Vec<&String> = match op {
                        Op::Write { path, .. }
                        | Op::MapWrite { path, .. }
                        | Op::Truncate { path, .. }
                        | Op::Fallocate { path, .. }
                        | Op::Punch { path, .. }
                        | Op::SetXattr { path, .. }
                        | Op::RemoveXattr { path, .. }
                        | Op::Unlink(path) => vec![path],
                        Op::Rename { from, to }
                        | Op::Link { from, to }
                        | Op::Whiteout { from, to } => vec![from, to],
                        Op::Exchange { a, b } => vec![a, b],
                        _ => vec![],
                    };
                    for p in touched {
                        assert_eq!(m.flags_of(p), 0, "{op:?} touches a flagged file");
                    }
                }
                m.apply(op);
            }
            assert!(m.flags.is_empty(), "flags left at the end: {:?}", m.flags);
        }
    }

    #[test]
    fn thread_workloads_stay_in_their_own_directories_and_regions() {
        assert_eq!(thread_ops(5, 200, 0, 1), ops(5, 200));
        for t in 0..3 {
            let root = thread_root(t);
            let v = thread_ops(5, 200, t, 3);
            assert_eq!(v.len(), 200, "thread {t}");
            let on_shared: Vec<_> = v
                .iter()
                .filter(|op| op.data_target() == Some(SHARED))
                .collect();
            assert_eq!(on_shared.len(), 66, "thread {t}");
            for kind in ["Punch", "Write", "MapWrite"] {
                assert!(
                    on_shared
                        .iter()
                        .any(|op| format!("{op:?}").starts_with(&format!("{kind} "))),
                    "thread {t}: no {kind}"
                );
            }
            let (lo, hi) = (t as u64 * SHARED_REGION, (t as u64 + 1) * SHARED_REGION);
            for op in &on_shared {
                let (Op::Write { off, len, .. }
                | Op::MapWrite { off, len, .. }
                | Op::Punch { off, len, .. }) = op
                else {
                    panic!("thread {t}: {op:?}");
                };
                assert!(
                    *off >= lo && off + len <= hi && *len > 0,
                    "thread {t}: {op:?} outside {lo}..{hi}"
                );
            }
            // Its operations in the shared directory name only its own
            // entries there, and every kind is among them.
            let in_dir: Vec<String> = v
                .iter()
                .filter_map(|op| match op {
                    Op::Create(p) | Op::Unlink(p) | Op::Symlink { path: p, .. } => {
                        Some(vec![p.clone()])
                    }
                    Op::Rename { from, to } => Some(vec![from.clone(), to.clone()]),
                    _ => None,
                })
                .flatten()
                .filter(|p| p.starts_with(&format!("{SHARED_DIR}/")))
                .collect();
            assert!(
                in_dir.iter().all(|p| shared_dir_mine(p, t)),
                "thread {t}: {in_dir:?}"
            );
            for u in 0..3 {
                assert_eq!(in_dir.iter().any(|p| shared_dir_mine(p, u)), u == t);
            }
            let dir_ops: Vec<_> = v
                .iter()
                .filter(|op| match op {
                    Op::Create(p) | Op::Unlink(p) | Op::Symlink { path: p, .. } => {
                        shared_dir_mine(p, t)
                    }
                    Op::Rename { from, to } => shared_dir_mine(from, t) || shared_dir_mine(to, t),
                    _ => false,
                })
                .collect();
            assert_eq!(dir_ops.len(), 33, "thread {t}");
            for kind in ["Create", "Unlink", "Symlink", "Rename"] {
                assert!(
                    dir_ops.iter().any(|op| format!("{op:?}").starts_with(kind)),
                    "thread {t}: no {kind} in the shared directory"
                );
            }
            assert!(
                in_dir.iter().any(|p| p.len() > 200),
                "thread {t}: no long name in the shared directory"
            );
            let m = states_from(thread_start(3), &v).pop().unwrap_or_default();
            assert!(
                m.nodes.keys().all(|p| p == SHARED
                    || p == SHARED_DIR
                    || shared_dir_mine(p, t)
                    || p == &root
                    || p.starts_with(&format!("{root}/"))),
                "thread {t}"
            );
            assert!(
                m.nodes
                    .keys()
                    .all(|p| p.len() - p.rfind('/').map_or(0, |i| i + 1) <= 255),
                "thread {t}: a name longer than 255 bytes"
            );
            assert_eq!(m.nodes.get(&format!("{root}/many")), Some(&Node::Dir));
            let f = m.file(SHARED).cloned().unwrap_or_default();
            assert_eq!(f.len() as u64, 3 * SHARED_REGION);
            assert!(
                f[..lo as usize]
                    .iter()
                    .chain(&f[hi as usize..])
                    .all(|&b| b == 0),
                "thread {t} wrote outside"
            );
            assert!(
                f[lo as usize..hi as usize].iter().any(|&b| b != 0),
                "thread {t} wrote nothing"
            );
        }
    }

    #[test]
    fn names_move_between_the_shared_directory_and_the_threads_own_tree() {
        for t in 0..2 {
            let root = thread_root(t);
            let v = thread_ops(7, 1200, t, 2);
            // Out of the shared directory, back, and back over a name of
            // its own there; each from a name that exists, to one in the
            // thread's part of the tree.
            let own = |p: &String| p.starts_with(&format!("{root}/s{t}-"));
            let mut m = thread_start(2);
            let (mut out_of, mut back, mut over) = (0, 0, 0);
            for op in &v {
                if let Op::Rename { from, to } = op {
                    if shared_dir_mine(from, t) || own(from) {
                        assert!(
                            matches!(m.nodes.get(from), Some(Node::File(_) | Node::Symlink(_))),
                            "thread {t}: {op:?}"
                        );
                        assert!(shared_dir_mine(to, t) || own(to), "thread {t}: {op:?}");
                    }
                    if shared_dir_mine(from, t) && own(to) {
                        out_of += 1;
                    } else if own(from) && shared_dir_mine(to, t) {
                        back += 1;
                        over += m.nodes.contains_key(to) as usize;
                    }
                }
                m.apply(op);
            }
            assert!(
                out_of > 2 && back > 2 && over > 0,
                "thread {t}: {out_of} out, {back} back, {over} over"
            );
        }
    }

    #[test]
    fn flags_are_set_and_all_cleared_by_the_end() {
        for seed in [1, 2, 99, 20261125] {
            let v = ops(seed, 300);
            assert_eq!(v.len(), 300);
            let set = v
                .iter()
                .filter(|op| matches!(op, Op::SetFlags { flags, .. } if *flags != 0))
                .count();
            assert!(set > 0, "seed {seed}: no flag set");
            let end = states_of(&v).pop().unwrap_or_default();
            assert!(end.flags.is_empty(), "seed {seed}: {:?}", end.flags);
        }
    }

    #[test]
    fn extended_attributes_follow_the_file_through_links_and_go_with_it() {
        let mut m = Model::default();
        let set = |n: &str| Op::SetXattr {
            path: "w/a".into(),
            name: n.into(),
            len: 5,
            seed: 1,
        };
        for op in [
            Op::Mkdir("w".into()),
            Op::Create("w/a".into()),
            set("user.k0"),
            set("user.k1"),
            Op::RemoveXattr {
                path: "w/a".into(),
                name: "user.k0".into(),
            },
            Op::Link {
                from: "w/a".into(),
                to: "w/b".into(),
            },
            Op::Rename {
                from: "w/a".into(),
                to: "w/c".into(),
            },
        ] {
            m.apply(&op);
        }
        let want: Vec<u8> = (0..5).map(|i| pattern(1, i)).collect();
        assert_eq!(
            m.xattrs_of("w/b").into_iter().collect::<Vec<_>>(),
            vec![("user.k1".to_string(), want)]
        );
        assert_eq!(m.xattrs_of("w/b"), m.xattrs_of("w/c"));
        m.apply(&Op::Unlink("w/b".into()));
        assert!(!m.xattrs.is_empty());
        m.apply(&Op::Unlink("w/c".into()));
        assert!(m.xattrs.is_empty(), "{:?}", m.xattrs);
    }

    #[test]
    fn some_names_take_two_directory_slots() {
        let long = |o: &Op| match o {
            Op::Create(p) | Op::Mkdir(p) => p.rsplit('/').next().map_or(0, str::len),
            _ => 0,
        };
        let v = ops(20261125, 300);
        assert!(
            v.iter().map(long).any(|n| (249..=255).contains(&n)),
            "{v:?}"
        );
        assert!(v.iter().map(long).all(|n| n <= 255));
    }

    #[test]
    fn whiteout_moves_the_file_and_leaves_a_whiteout() {
        let mut m = Model::default();
        for op in [
            Op::Mkdir("w".into()),
            Op::Create("w/a".into()),
            Op::Write {
                path: "w/a".into(),
                off: 0,
                len: 3,
                seed: 2,
            },
            Op::Whiteout {
                from: "w/a".into(),
                to: "w/b".into(),
            },
        ] {
            m.apply(&op);
        }
        assert_eq!(m.nodes.get("w/a"), Some(&Node::Whiteout));
        assert_eq!(m.file("w/b").map(|f| f.len()), Some(3));
        m.apply(&Op::Unlink("w/a".into()));
        assert!(!m.nodes.contains_key("w/a") && m.file("w/b").is_some());
    }

    #[test]
    fn exchange_swaps_two_names_and_keeps_both_files() {
        let mut m = Model::default();
        for op in [
            Op::Mkdir("w".into()),
            Op::Mkdir("w/d".into()),
            Op::Create("w/a".into()),
            Op::Symlink {
                path: "w/d/s".into(),
                target: "t".into(),
            },
            Op::Write {
                path: "w/a".into(),
                off: 0,
                len: 3,
                seed: 2,
            },
            Op::Exchange {
                a: "w/a".into(),
                b: "w/d/s".into(),
            },
        ] {
            m.apply(&op);
        }
        assert_eq!(m.nodes.get("w/a"), Some(&Node::Symlink("t".into())));
        assert_eq!(m.file("w/d/s").map(|f| f.len()), Some(3));
        assert!((0..50).any(|s| ops(s, 300).iter().any(|o| matches!(o, Op::Exchange { .. }))));
    }

    #[test]
    fn rename_over_a_file_drops_its_contents_unless_linked() {
        let mut m = Model::default();
        for op in [
            Op::Mkdir("w".into()),
            Op::Create("w/a".into()),
            Op::Create("w/b".into()),
            Op::Link {
                from: "w/b".into(),
                to: "w/c".into(),
            },
            Op::Rename {
                from: "w/a".into(),
                to: "w/b".into(),
            },
        ] {
            m.apply(&op);
        }
        assert_eq!(m.files.len(), 2);
        assert_ne!(m.nodes.get("w/b"), m.nodes.get("w/c"));
    }
}
