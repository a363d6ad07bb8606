//! ferrocrash on hand-made traces: a simulated file system performs the
//! workload's first two operations (mkdir `w`, mkdir `w/many`) on a fresh
//! image with the module's journal protocol. Done right, every crash state
//! is consistent; with the ordering broken in either of two ways, the
//! checker must find inconsistent states. This proves it can fail.

use ferrofs_crashcheck::check::{run, Opts};
use ferrofs_crashcheck::trace::{self, Event};
use ferrofs_format::*;

const BLOCKS: u64 = 4096;
const BS: usize = BLOCK_SIZE;

#[derive(Clone, Copy, PartialEq)]
enum Bug {
    None,
    /// The in-place store is not preceded by a fence after its record.
    NoFenceAfterRecord,
    /// The in-place stores are not written back before the commit.
    NoFlushBeforeCommit,
}

struct Sim {
    img: Vec<u8>,
    geo: Geometry,
    ev: Vec<Event>,
    seq_done: u64,
    pos: usize,
    bug: Bug,
}

impl Sim {
    fn fresh(bug: Bug) -> Sim {
        let geo = Geometry::for_blocks(BLOCKS, None).unwrap();
        let mut img = vec![0u8; BLOCKS as usize * BS];
        img[..SUPERBLOCK_SIZE].copy_from_slice(Superblock::new(&geo, [3; 16], b"t", 1).as_bytes());
        let mut s = Sim {
            img,
            geo,
            ev: Vec::new(),
            seq_done: 0,
            pos: JOURNAL_RECORDS_OFF,
            bug,
        };
        for b in 0..geo.data_start + 1 {
            s.set_bit_raw(b);
        }
        for b in BLOCKS..geo.bitmap_blocks as u64 * BS as u64 * 8 {
            s.set_bit_raw(b);
        }
        // Root: a directory with one (empty) block at data_start.
        let mut root = Inode::zeroed();
        root.mode.set(S_IFDIR | 0o755);
        root.nlink.set(2);
        root.parent.set(ROOT_INO);
        root.size.set(BS as u64);
        root.blocks.set(1);
        root.direct[0].set(geo.data_start as u32);
        root.update_checksum(ROOT_INO);
        let off = s.inode_off(ROOT_INO);
        s.img[off..off + INODE_SIZE].copy_from_slice(root.as_bytes());
        s
    }

    fn set_bit_raw(&mut self, b: u64) {
        let off = self.geo.bitmap_start as usize * BS + (b / 8) as usize;
        self.img[off] |= 1 << (b % 8);
    }

    fn inode_off(&self, ino: u32) -> usize {
        self.geo.itable_start as usize * BS + (ino as usize - 1) * INODE_SIZE
    }

    /// A logged in-place store, as `Tx::write` does it.
    fn write(&mut self, off: usize, data: &[u8]) {
        let j = self.geo.journal_start as usize * BS;
        let old = self.img[off..off + data.len()].to_vec();
        let h = RecordHeader::new(self.seq_done + 1, off as u64, &old);
        let mut rec = h.as_bytes().to_vec();
        rec.extend_from_slice(&old);
        let at = j + self.pos;
        self.store(at, &rec);
        self.ev.push(Event::Flush {
            off: at as u64,
            len: rec.len() as u64,
        });
        self.pos += record_size(old.len());
        if self.bug != Bug::NoFenceAfterRecord {
            self.ev.push(Event::Fence);
        }
        self.store(off, data);
        if self.bug != Bug::NoFlushBeforeCommit {
            self.ev.push(Event::Flush {
                off: off as u64,
                len: data.len() as u64,
            });
        }
    }

    fn store(&mut self, off: usize, data: &[u8]) {
        self.img[off..off + data.len()].copy_from_slice(data);
        self.ev.push(Event::Store {
            off: off as u64,
            data: data.to_vec(),
        });
    }

    fn commit(&mut self) {
        let j = self.geo.journal_start as usize * BS;
        self.ev.push(Event::Fence);
        self.seq_done += 1;
        let mut head = JournalHeader::new(self.seq_done).as_bytes()[..16].to_vec();
        head.truncate(16);
        self.store(j, &head[..8]);
        self.store(j + JOURNAL_SEQ_DONE_OFF, &head[8..16]);
        self.ev.push(Event::Flush {
            off: j as u64,
            len: 16,
        });
        self.ev.push(Event::Fence);
        self.pos = JOURNAL_RECORDS_OFF;
    }

    fn inode(&self, ino: u32) -> Inode {
        Inode::from_bytes(&self.img[self.inode_off(ino)..]).unwrap()
    }

    fn put_inode(&mut self, ino: u32, mut d: Inode) {
        d.update_checksum(ino);
        let off = self.inode_off(ino);
        self.write(off, d.as_bytes());
    }

    /// mkdir `name` (inode `ino`) in `parent`, whose block is `pblock`.
    fn mkdir(&mut self, parent: u32, pblock: u64, ino: u32, name: &[u8]) {
        let mut d = Inode::zeroed();
        d.mode.set(S_IFDIR | 0o755);
        d.nlink.set(2);
        d.parent.set(parent);
        self.put_inode(ino, d);
        let e = Dirent::new(ino, name, DT_DIR).unwrap();
        let slot = (0..DIRENTS_PER_BLOCK)
            .map(|s| pblock as usize * BS + s * DIRENT_SIZE)
            .find(|&o| self.img[o..o + 4] == [0; 4])
            .unwrap();
        self.write(slot, &e.as_bytes()[..8 + name.len()]);
        let mut p = self.inode(parent);
        p.nlink.set(p.nlink.get() + 1);
        self.put_inode(parent, p);
    }
}

/// The trace of the workload's first two operations, and the image before.
fn scenario(bug: Bug) -> (Vec<u8>, Vec<u8>) {
    let mut s = Sim::fresh(bug);
    let pre = s.img.clone();
    let root_block = s.geo.data_start;
    s.ev.push(Event::Mark(0));
    s.mkdir(ROOT_INO, root_block, 2, b"w");
    s.commit();
    s.ev.push(Event::Mark(1));
    s.ev.push(Event::Mark(2));
    // w gets its first block: allocated (bitmap word logged), zeroed
    // without a record (a block of this transaction), linked.
    let b = root_block + 1;
    let word = s.geo.bitmap_start as usize * BS + (b / 64) as usize * 8;
    let mut w = [0u8; 8];
    w.copy_from_slice(&s.img[word..word + 8]);
    let v = u64::from_le_bytes(w) | 1 << (b % 64);
    s.write(word, &v.to_le_bytes());
    s.store(b as usize * BS, &vec![0; BS]);
    s.ev.push(Event::Flush {
        off: (b as usize * BS) as u64,
        len: BS as u64,
    });
    let mut d = s.inode(2);
    d.direct[0].set(b as u32);
    d.size.set(BS as u64);
    d.blocks.set(1);
    s.put_inode(2, d);
    s.mkdir(2, b, 3, b"many");
    s.commit();
    s.ev.push(Event::Mark(3));
    (pre, trace::write(&s.ev))
}

fn check(bug: Bug) -> (usize, usize) {
    let (pre, raw) = scenario(bug);
    let events = trace::parse(&raw).unwrap();
    let ops = ferrofs_crashwl::ops(5, 2);
    assert_eq!(ops[0], ferrofs_crashwl::Op::Mkdir("w".into()));
    assert_eq!(ops[1], ferrofs_crashwl::Op::Mkdir("w/many".into()));
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let o = Opts {
        states_per_point: 20,
        rng_seed: 3,
        max_points: 10_000,
        save_dir: None,
        scratch: dir.join(format!(
            "synthetic-{}-{}.img",
            std::process::id(),
            bug as u8
        )),
    };
    let t0 = std::time::Instant::now();
    let r = run(pre, &events, &ops, &o).unwrap();
    let _ = std::fs::remove_file(&o.scratch);
    eprintln!(
        "{} events, {} points, {} states, {} inconsistent in {:.2} s",
        events.len(),
        r.points,
        r.states,
        r.inconsistent,
        t0.elapsed().as_secs_f64()
    );
    for d in &r.details {
        eprintln!("{d}");
    }
    (r.states, r.inconsistent)
}

#[test]
fn correctly_ordered_journal_trace_has_no_inconsistent_state() {
    let (states, bad) = check(Bug::None);
    assert!(states > 20, "only {states} states");
    assert_eq!(bad, 0, "inconsistent states in a correct trace");
}

#[test]
fn in_place_store_before_its_record_is_fenced_is_caught() {
    let (_, bad) = check(Bug::NoFenceAfterRecord);
    assert!(
        bad > 0,
        "the checker missed a store that can overtake its undo record"
    );
}

#[test]
fn commit_before_the_in_place_stores_are_written_back_is_caught() {
    let (_, bad) = check(Bug::NoFlushBeforeCommit);
    assert!(
        bad > 0,
        "the checker missed a commit that can overtake its stores"
    );
}

/// Runs the `ferrocrash` binary on a scenario written to files.
fn cli(bug: Bug, overflowed: bool) -> (Option<i32>, String) {
    let (pre, mut raw) = scenario(bug);
    if overflowed {
        raw[12] |= 1;
    }
    let dir = std::env::temp_dir().join(format!(
        "ferrocrash-cli-{}-{}-{}",
        std::process::id(),
        bug as u8,
        overflowed
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("pre.img"), &pre).unwrap();
    std::fs::write(dir.join("trace.bin"), &raw).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrocrash"))
        .arg("--image")
        .arg(dir.join("pre.img"))
        .arg("--trace")
        .arg(dir.join("trace.bin"))
        .args(["--seed", "5", "--ops", "2", "--states-per-point", "4"])
        .arg("--save-dir")
        .arg(dir.join("bad"))
        .output()
        .unwrap();
    let saved = std::fs::read_dir(dir.join("bad")).map_or(0, |d| d.count());
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!(
        "{}{}saved {saved}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    (out.status.code(), text)
}

#[test]
fn ferrocrash_exits_0_for_a_correct_trace_1_with_saved_states_for_a_wrong_one_2_for_an_overflowed_one(
) {
    let (code, text) = cli(Bug::None, false);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains(" 0 inconsistent"), "{text}");
    let (code, text) = cli(Bug::NoFlushBeforeCommit, false);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("inconsistent: event "), "{text}");
    assert!(!text.contains("saved 0"), "no image saved: {text}");
    let (code, text) = cli(Bug::None, true);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("overflowed"), "{text}");
}
