//! The x86 persistency model over a trace.
//!
//! Per 64-byte cache line, the stores not yet known durable, in order. A
//! write-back (FLUSH) marks the line's current stores (whoever made them:
//! the line is written back whole) flushed by the thread that issued it; a
//! non-temporal store is flushed by its thread at once; a FENCE makes
//! durable what its own thread flushed ([`Event::Task`] says which thread
//! issues the events that follow). At a crash, each line independently may have persisted any
//! prefix of its not-yet-durable stores (stores to one line persist in
//! order), on top of the durable image.

use std::collections::BTreeMap;

use crate::trace::Event;

const LINE: u64 = 64;

#[derive(Debug, Clone)]
struct Piece {
    off: u64,
    data: Vec<u8>,
    /// The threads that wrote it back (a fence of any of them makes it durable).
    flushed: Vec<u32>,
}

/// The durable image and what may or may not have reached it.
pub struct Machine {
    pub durable: Vec<u8>,
    pending: BTreeMap<u64, Vec<Piece>>,
    /// Stores reaching past the end of the image (ignored).
    pub outside: u64,
    /// The thread of the write-backs and fences that follow.
    task: u32,
}

impl Machine {
    pub fn new(image: Vec<u8>) -> Machine {
        Machine {
            durable: image,
            pending: BTreeMap::new(),
            outside: 0,
            task: 0,
        }
    }

    /// Apply one event.
    pub fn step(&mut self, e: &Event) {
        match e {
            Event::Store { off, data } => self.store(*off, data, false),
            Event::NtStore { off, data } => self.store(*off, data, true),
            Event::Flush { off, len } => {
                if *len == 0 {
                    return;
                }
                let (first, last) = (off / LINE, off.saturating_add(len - 1) / LINE);
                let t = self.task;
                for (_, pieces) in self.pending.range_mut(first..=last) {
                    for p in pieces.iter_mut() {
                        if !p.flushed.contains(&t) {
                            p.flushed.push(t);
                        }
                    }
                }
            }
            Event::Task(t) => self.task = *t,
            Event::Fence => {
                let t = self.task;
                let lines: Vec<u64> = self.pending.keys().copied().collect();
                for l in lines {
                    let Some(pieces) = self.pending.remove(&l) else {
                        continue;
                    };
                    let mut keep = Vec::new();
                    for p in pieces {
                        if p.flushed.contains(&t) && keep.is_empty() {
                            put(&mut self.durable, &p);
                        } else {
                            keep.push(p);
                        }
                    }
                    if !keep.is_empty() {
                        self.pending.insert(l, keep);
                    }
                }
            }
            Event::Mark(_) => {}
        }
    }

    fn store(&mut self, off: u64, data: &[u8], flushed: bool) {
        let end = match off.checked_add(data.len() as u64) {
            Some(end) if end <= self.durable.len() as u64 => end,
            _ => {
                self.outside += 1;
                return;
            }
        };
        let mut at = off;
        while at < end {
            let line_end = ((at / LINE) + 1) * LINE;
            let to = line_end.min(end);
            let piece = Piece {
                off: at,
                data: data[(at - off) as usize..(to - off) as usize].to_vec(),
                flushed: if flushed { vec![self.task] } else { Vec::new() },
            };
            self.pending.entry(at / LINE).or_default().push(piece);
            at = to;
        }
    }

    /// Lines with stores that may or may not have persisted, and how many.
    pub fn pending_counts(&self) -> Vec<usize> {
        self.pending.values().map(|v| v.len()).collect()
    }

    /// A crash image: the durable image plus `prefix[i]` stores of the i-th
    /// pending line (in line order).
    pub fn crash_image(&self, prefix: &[usize]) -> Vec<u8> {
        let mut img = Vec::new();
        self.crash_image_into(prefix, &mut img);
        img
    }

    /// [`Machine::crash_image`] into `img`, reusing its allocation (a fresh
    /// 16 MiB buffer per state costs more in page faults than the copy).
    pub fn crash_image_into(&self, prefix: &[usize], img: &mut Vec<u8>) {
        img.clear();
        img.extend_from_slice(&self.durable);
        for (pieces, &k) in self.pending.values().zip(prefix) {
            for p in pieces.iter().take(k) {
                put(img, p);
            }
        }
    }
}

fn put(img: &mut [u8], p: &Piece) {
    let o = p.off as usize;
    img[o..o + p.data.len()].copy_from_slice(&p.data);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(off: u64, v: u8, n: usize) -> Event {
        Event::Store {
            off,
            data: vec![v; n],
        }
    }

    #[test]
    fn a_store_is_durable_only_after_flush_and_fence() {
        let mut m = Machine::new(vec![0; 256]);
        m.step(&st(0, 1, 8));
        m.step(&Event::Fence);
        assert_eq!(m.durable[0], 0, "fence without flush");
        m.step(&Event::Flush { off: 0, len: 8 });
        assert_eq!(m.durable[0], 0, "flush without fence");
        m.step(&Event::Fence);
        assert_eq!(m.durable[0], 1);
        assert!(m.pending_counts().is_empty());
    }

    #[test]
    fn a_fence_makes_durable_only_its_own_threads_write_backs() {
        let mut m = Machine::new(vec![0; 256]);
        m.step(&Event::Task(1));
        m.step(&st(0, 1, 8));
        m.step(&Event::Flush { off: 0, len: 8 });
        m.step(&Event::NtStore {
            off: 128,
            data: vec![3; 8],
        });
        m.step(&Event::Task(2));
        m.step(&st(64, 2, 8));
        m.step(&Event::Flush { off: 64, len: 8 });
        m.step(&Event::Fence);
        assert_eq!(
            (m.durable[0], m.durable[64], m.durable[128]),
            (0, 2, 0),
            "thread 2's fence"
        );
        // Thread 2 writes line 0 back too (whoever stored to it): its next
        // fence makes it durable.
        m.step(&Event::Flush { off: 0, len: 1 });
        m.step(&Event::Fence);
        assert_eq!((m.durable[0], m.durable[128]), (1, 0));
        m.step(&Event::Task(1));
        m.step(&Event::Fence);
        assert_eq!(
            m.durable[128], 3,
            "thread 1's non-temporal store at its fence"
        );
        assert!(m.pending_counts().is_empty());
    }

    #[test]
    fn stores_to_one_line_persist_in_order_and_lines_independently() {
        let mut m = Machine::new(vec![0; 256]);
        m.step(&st(0, 1, 1));
        m.step(&st(1, 2, 1));
        m.step(&st(64, 3, 1));
        assert_eq!(m.pending_counts(), vec![2, 1]);
        let img = m.crash_image(&[1, 0]);
        assert_eq!(&img[..2], &[1, 0]);
        assert_eq!(img[64], 0);
        let img = m.crash_image(&[2, 1]);
        assert_eq!((img[0], img[1], img[64]), (1, 2, 3));
    }

    #[test]
    fn a_store_across_lines_is_split_and_nt_stores_need_only_a_fence() {
        let mut m = Machine::new(vec![0; 256]);
        m.step(&Event::NtStore {
            off: 60,
            data: vec![7; 8],
        });
        assert_eq!(m.pending_counts(), vec![1, 1]);
        m.step(&Event::Fence);
        assert_eq!(&m.durable[60..68], &[7; 8]);
    }

    #[test]
    fn stores_past_the_image_are_counted_and_ignored() {
        let mut m = Machine::new(vec![0; 128]);
        m.step(&st(120, 1, 16));
        m.step(&st(u64::MAX - 3, 1, 8));
        m.step(&Event::Flush {
            off: u64::MAX - 3,
            len: 8,
        });
        m.step(&Event::Fence);
        assert_eq!(m.outside, 2);
        assert!(m.pending_counts().is_empty());
        assert_eq!(m.durable, vec![0; 128]);
    }

    #[test]
    fn a_flushed_store_behind_an_unflushed_one_waits_for_it() {
        let mut m = Machine::new(vec![0; 128]);
        m.step(&st(0, 1, 1));
        m.step(&Event::NtStore {
            off: 1,
            data: vec![2],
        });
        m.step(&Event::Fence);
        assert_eq!(m.durable[1], 0);
        assert_eq!(m.pending_counts(), vec![2]);
    }
}
