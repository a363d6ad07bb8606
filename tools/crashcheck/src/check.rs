//! Walk a trace, build crash states, check each one.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use ferrofs_crashwl::{Model, Node, Op};

use crate::replay::Machine;
use crate::trace::Event;
use crate::tree::{self, Kind, Tree};

// The workload's flags are the inode's flags as stored.
const _: () = assert!(
    ferrofs_crashwl::FLAG_IMMUTABLE == ferrofs_format::INODE_FL_IMMUTABLE
        && ferrofs_crashwl::FLAG_APPEND == ferrofs_format::INODE_FL_APPEND
);

pub struct Opts {
    /// Random states per crash point, besides "nothing pending persisted"
    /// and "everything pending persisted".
    pub states_per_point: usize,
    pub rng_seed: u64,
    /// Check at most this many crash points (a random subset, in order).
    pub max_points: usize,
    pub save_dir: Option<PathBuf>,
    /// Where each state is written for fsck.
    pub scratch: PathBuf,
}

#[derive(Default)]
pub struct Report {
    pub candidate_points: usize,
    pub points: usize,
    pub states: usize,
    pub inconsistent: usize,
    pub details: Vec<String>,
    pub outside: u64,
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Check every crash state of `events` replayed on `pre`, against the model
/// of `ops`.
pub fn run(pre: Vec<u8>, events: &[Event], ops: &[Op], o: &Opts) -> Result<Report, String> {
    run_threads(pre, events, &[ops.to_vec()], o)
}

/// Marker `v`: (thread, mark of that thread's own operations).
fn split_mark(v: u64) -> (usize, u64) {
    ((v >> 32) as usize, v & 0xffff_ffff)
}

/// [`run`] for a workload of several threads at once (`ferrotest
/// crash-workload --threads`): `workloads[t]` is thread t's list, under
/// [`ferrofs_crashwl::thread_root`]`(t)`, its markers `t * 2^32 + 2k(+1)`.
/// Each crash state's tree must be, under each thread's directory, that
/// thread's model before or after its own last marker.
pub fn run_threads(
    pre: Vec<u8>,
    events: &[Event],
    workloads: &[Vec<Op>],
    o: &Opts,
) -> Result<Report, String> {
    let geo = tree::geometry(&pre)?;
    let start = ferrofs_crashwl::thread_start(workloads.len());
    let mut states: Vec<Models> = workloads
        .iter()
        .map(|w| Models::new(start.clone(), w))
        .collect();
    let mut rng = Rng(o.rng_seed);
    let candidates: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Event::Fence | Event::Mark(_)))
        .map(|(i, _)| i)
        .collect();
    let mut chosen = vec![candidates.len() <= o.max_points; events.len()];
    if candidates.len() > o.max_points {
        let mut c = candidates.clone();
        for i in 0..o.max_points {
            let j = i + (rng.next() % (c.len() - i) as u64) as usize;
            c.swap(i, j);
            chosen[c[i]] = true;
        }
    }
    let mut r = Report {
        candidate_points: candidates.len(),
        ..Report::default()
    };
    let mut m = Machine::new(pre);
    let mut img = Vec::new();
    let mut scratch = Scratch::open(&o.scratch)?;
    let mut last_mark: Vec<Option<u64>> = vec![None; workloads.len()];
    for (i, e) in events.iter().enumerate() {
        let check_here = chosen[i] && matches!(e, Event::Fence | Event::Mark(_));
        if let Event::Mark(v) = e {
            m.step(e);
            let (t, k) = split_mark(*v);
            *last_mark.get_mut(t).ok_or_else(|| {
                format!(
                    "marker {v:#x} of thread {t}: the workload has {}",
                    workloads.len()
                )
            })? = Some(k);
        }
        if check_here {
            r.points += 1;
            let counts = m.pending_counts();
            let mut prefixes = vec![vec![0; counts.len()]];
            if !counts.is_empty() {
                prefixes.push(counts.clone());
                for _ in 0..o.states_per_point {
                    prefixes.push(
                        counts
                            .iter()
                            .map(|&n| (rng.next() % (n as u64 + 1)) as usize)
                            .collect(),
                    );
                }
                prefixes.sort();
                prefixes.dedup();
            }
            for p in prefixes {
                r.states += 1;
                m.crash_image_into(&p, &mut img);
                if let Err(why) = check_state(
                    &mut img,
                    &geo,
                    &last_mark,
                    workloads,
                    &mut states,
                    &mut scratch,
                ) {
                    r.inconsistent += 1;
                    if r.details.len() < 10 {
                        let one = |lm: &Option<u64>| {
                            lm.map_or("none".to_string(), |v| {
                                format!(
                                    "{v} (op {} {})",
                                    v / 2,
                                    if v % 2 == 0 { "running" } else { "returned" }
                                )
                            })
                        };
                        let mark = if last_mark.len() == 1 {
                            one(&last_mark[0])
                        } else {
                            last_mark
                                .iter()
                                .enumerate()
                                .map(|(t, lm)| format!("thread {t}: {}", one(lm)))
                                .collect::<Vec<_>>()
                                .join(", ")
                        };
                        let mut d = format!("event {i}, last mark {mark}: {why}");
                        if let Some(dir) = &o.save_dir {
                            let f = dir.join(format!("crash-{i}-{}.img", r.inconsistent));
                            if std::fs::create_dir_all(dir).is_ok()
                                && std::fs::write(&f, &img).is_ok()
                            {
                                d.push_str(&format!(" (saved {})", f.display()));
                            }
                        }
                        r.details.push(d);
                    }
                }
            }
        }
        if !matches!(e, Event::Mark(_)) {
            m.step(e);
        }
    }
    r.outside = m.outside;
    Ok(r)
}

/// The models before and after operation k, for the k of the last marker.
/// Markers only grow, so they are built by applying one operation at a time
/// instead of holding every state (each holds all file contents).
struct Models<'a> {
    ops: &'a [Op],
    start: Model,
    k: usize,
    before: Model,
    after: Model,
}

impl<'a> Models<'a> {
    /// From the tree `start` (`ferrofs_crashwl::thread_start`).
    fn new(start: Model, ops: &'a [Op]) -> Models<'a> {
        let mut after = start.clone();
        if let Some(op) = ops.first() {
            after.apply(op);
        }
        Models {
            ops,
            k: 0,
            before: start.clone(),
            after,
            start,
        }
    }

    /// (model before op k, model after op k); `k < ops.len()`.
    fn around(&mut self, k: usize) -> (&Model, &Model) {
        if k < self.k {
            *self = Models::new(self.start.clone(), self.ops);
        }
        while self.k < k {
            self.k += 1;
            self.before.clone_from(&self.after);
            if let Some(op) = self.ops.get(self.k) {
                self.after.apply(op);
            }
        }
        (&self.before, &self.after)
    }
}

fn check_state(
    img: &mut [u8],
    geo: &ferrofs_format::Geometry,
    last_mark: &[Option<u64>],
    workloads: &[Vec<Op>],
    states: &mut [Models],
    scratch: &mut Scratch,
) -> Result<(), String> {
    ferrofs_image::rollback_in_memory(img, geo)
        .map_err(|e| format!("journal recovery failed: {}", e.reason()))?;
    scratch.fsck(img)?;
    let t = tree::read(img).map_err(|e| format!("reading the tree: {e}"))?;
    if workloads.len() == 1 {
        return check_thread(&t, last_mark[0], &workloads[0], &mut states[0]);
    }
    let roots: Vec<String> = (0..workloads.len())
        .map(ferrofs_crashwl::thread_root)
        .collect();
    let under =
        |p: &str, r: &str| p == r || p.strip_prefix(r).is_some_and(|rest| rest.starts_with('/'));
    let shared = ferrofs_crashwl::SHARED;
    let sd = ferrofs_crashwl::SHARED_DIR;
    let mine = ferrofs_crashwl::shared_dir_mine;
    if let Some(p) = t.keys().find(|p| {
        *p != shared && *p != sd && !(0..roots.len()).any(|i| under(p, &roots[i]) || mine(p, i))
    }) {
        return Err(format!("{p}: outside every thread's directory and names"));
    }
    for (i, root) in roots.iter().enumerate() {
        // The thread's tree, and its names in the shared directory (which,
        // like the shared file, is durable before its first marker).
        let started = last_mark[i].is_some();
        let mut sub: Tree = t
            .iter()
            .filter(|(p, _)| under(p, root) || (started && (*p == sd || mine(p, i))))
            .map(|(p, v)| (p.clone(), v.clone()))
            .collect();
        // The shared file, durable before any thread's first marker, with
        // only this thread's region kept: the others' are zeros in its model.
        if last_mark[i].is_some() {
            if let Some((ino, Kind::File(bytes, x, f))) = t.get(shared) {
                let (lo, hi) = region(i);
                let mut mine = vec![0u8; bytes.len()];
                let hi = hi.min(bytes.len());
                if lo < hi {
                    mine[lo..hi].copy_from_slice(&bytes[lo..hi]);
                }
                sub.insert(shared.to_string(), (*ino, Kind::File(mine, x.clone(), *f)));
            } else if let Some((ino, k)) = t.get(shared) {
                sub.insert(shared.to_string(), (*ino, k.clone()));
            }
        }
        check_thread(&sub, last_mark[i], &workloads[i], &mut states[i])
            .map_err(|e| format!("thread {i}: {e}"))?;
    }
    Ok(())
}

/// Thread `t`'s bytes of the shared file.
fn region(t: usize) -> (usize, usize) {
    let r = ferrofs_crashwl::SHARED_REGION as usize;
    (t * r, (t + 1) * r)
}

/// One thread's part of a crash state (the tree under its directory).
fn check_thread(
    t: &Tree,
    last_mark: Option<u64>,
    ops: &[Op],
    states: &mut Models,
) -> Result<(), String> {
    let Some(v) = last_mark else {
        return compare(t, &Model::default(), None);
    };
    let k = (v / 2) as usize;
    if k >= ops.len() {
        return Err(format!("mark {v} past the {} operations", ops.len()));
    }
    let (pre, post) = states.around(k);
    if v % 2 == 1 {
        return compare(t, post, None);
    }
    let target = ops[k].data_target();
    let before = compare(t, pre, target.map(|p| (p, post)));
    let after = compare(t, post, target.map(|p| (p, pre)));
    match (before, after) {
        (Ok(()), _) | (_, Ok(())) => Ok(()),
        (Err(b), Err(a)) => Err(format!(
            "inside {:?}: neither before ({b}) nor after ({a})",
            ops[k]
        )),
    }
}

/// The file each state is written to for fsck, which reads a `File`. It is
/// overwritten in place: truncating and refilling it would free and fault in
/// 16 MiB of page cache per state.
struct Scratch {
    file: File,
    path: PathBuf,
}

impl Scratch {
    fn open(path: &Path) -> Result<Scratch, String> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Scratch {
            file,
            path: path.to_path_buf(),
        })
    }

    fn fsck(&mut self, img: &[u8]) -> Result<(), String> {
        self.file
            .write_all_at(img, 0)
            .and_then(|()| self.file.set_len(img.len() as u64))
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        let out = ferrofs_fsck::check::check(&self.file, false, false)
            .map_err(|e| format!("fsck: operational error: {}", e.0))?;
        match out.problems.first() {
            None => Ok(()),
            Some(p) => Err(format!(
                "fsck: {} problem(s), first: {}",
                out.problems.len(),
                p.text
            )),
        }
    }
}

/// The tree equals the model; with `loose = (path, other)`, the file at
/// `path` (and its hard links) may hold any per-byte mix of its bytes in
/// the model and in `other`, with either size.
fn compare(t: &Tree, m: &Model, loose: Option<(&str, &Model)>) -> Result<(), String> {
    let tp: Vec<&String> = t.keys().collect();
    let mp: Vec<&String> = m.nodes.keys().collect();
    if tp != mp {
        let extra: Vec<_> = tp
            .iter()
            .filter(|p| !m.nodes.contains_key(**p))
            .take(3)
            .collect();
        let missing: Vec<_> = mp.iter().filter(|p| !t.contains_key(**p)).take(3).collect();
        return Err(format!(
            "names differ: extra {extra:?}, missing {missing:?}"
        ));
    }
    let loose_id = loose.and_then(|(p, _)| match m.nodes.get(p) {
        Some(Node::File(id)) => Some(*id),
        _ => None,
    });
    let mut ino_of = std::collections::BTreeMap::new();
    let mut id_of = std::collections::BTreeMap::new();
    for (path, node) in &m.nodes {
        let Some((ino, kind)) = t.get(path) else {
            return Err(format!("{path} missing"));
        };
        match (node, kind) {
            (Node::Dir, Kind::Dir) => {}
            (Node::Symlink(a), Kind::Symlink(b)) if a == b => {}
            (Node::Whiteout, Kind::Whiteout) => {}
            (Node::File(id), Kind::File(bytes, xattrs, flags)) => {
                let want_flags = m.flags.get(id).copied().unwrap_or(0);
                if *flags != want_flags {
                    return Err(format!(
                        "{path}: flags {flags:#x}, expected {want_flags:#x}"
                    ));
                }
                if *xattrs != m.xattrs.get(id).cloned().unwrap_or_default() {
                    return Err(format!(
                        "{path}: extended attributes {:?}, expected {:?}",
                        xattrs.keys().collect::<Vec<_>>(),
                        m.xattrs.get(id).map(|x| x.keys().collect::<Vec<_>>())
                    ));
                }
                if *ino_of.entry(*id).or_insert(*ino) != *ino
                    || *id_of.entry(*ino).or_insert(*id) != *id
                {
                    return Err(format!("{path}: hard links do not match"));
                }
                let want = m.files.get(id).ok_or("model without contents")?;
                if Some(*id) == loose_id {
                    let other = loose
                        .and_then(|(p, o)| o.file(p))
                        .cloned()
                        .unwrap_or_default();
                    mixed(path, bytes, want, &other)?;
                } else if bytes != want {
                    let at = bytes.iter().zip(want.iter()).position(|(a, b)| a != b);
                    return Err(format!(
                        "{path}: {} bytes, expected {}; first difference at {at:?}",
                        bytes.len(),
                        want.len()
                    ));
                }
            }
            (n, k) => {
                let k = match k {
                    Kind::Dir => "a directory".to_string(),
                    Kind::File(b, _, _) => format!("a file of {} bytes", b.len()),
                    Kind::Symlink(s) => format!("a symlink to {s:?}"),
                    Kind::Whiteout => "a whiteout".to_string(),
                };
                return Err(format!("{path}: expected {n:?}, found {k}"));
            }
        }
    }
    Ok(())
}

fn mixed(path: &str, got: &[u8], a: &[u8], b: &[u8]) -> Result<(), String> {
    if got.len() != a.len() && got.len() != b.len() {
        return Err(format!(
            "{path}: size {} is neither {} nor {}",
            got.len(),
            a.len(),
            b.len()
        ));
    }
    for (i, &g) in got.iter().enumerate() {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        if g != x && g != y {
            return Err(format!(
                "{path}: byte {i} is {g}, neither old {x} nor new {y}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_around_each_operation_match_the_workload_states() {
        let ops = ferrofs_crashwl::ops(11, 40);
        let all = ferrofs_crashwl::states_of(&ops);
        let mut m = Models::new(Model::default(), &ops);
        for k in [0, 1, 2, 2, 7, 39, 3, 0, 20] {
            let (a, b) = m.around(k);
            assert_eq!((a, b), (&all[k], &all[k + 1]), "around op {k}");
        }
    }
}
