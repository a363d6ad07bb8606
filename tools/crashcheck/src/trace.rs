//! The trace the module records with `-o trace=MiB` (src/sys/trace.rs).
//!
//! A 32-byte header (`FERROTRC`, version 1 or 2, flags: bit 0 = events were
//! dropped, length of the events), then packed events: a kind byte and
//! 1 STORE off u64 len u32 data, 2 ZERO off len, 3 NTSTORE [task u32] off
//! len data, 4 FLUSH [task u32] off len, 5 FENCE [task u32], 6 MARK value
//! u64. Little-endian. Version 2 has the `[task]` fields: the thread that
//! issued a write-back or fence (a fence orders only its own thread's
//! write-backs). Parsing gives an [`Event::Task`] before each event whose
//! task differs from the one before (version 1: all task 0).

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Cached stores (`data`), or cached stores of zeros (`ZERO`).
    Store {
        off: u64,
        data: Vec<u8>,
    },
    /// Non-temporal stores: durable at the next fence.
    NtStore {
        off: u64,
        data: Vec<u8>,
    },
    Flush {
        off: u64,
        len: u64,
    },
    Fence,
    Mark(u64),
    /// The FLUSH, NTSTORE and FENCE events that follow were issued by this
    /// thread (until the next `Task`).
    Task(u32),
}

fn take<const N: usize>(b: &[u8], at: &mut usize) -> Result<[u8; N], String> {
    let s = b
        .get(*at..*at + N)
        .ok_or_else(|| format!("trace cut short at byte {at}"))?;
    *at += N;
    let mut a = [0u8; N];
    a.copy_from_slice(s);
    Ok(a)
}

/// Parse a whole trace file.
pub fn parse(b: &[u8]) -> Result<Vec<Event>, String> {
    if b.len() < 32 || &b[..8] != b"FERROTRC" {
        return Err("not a ferrofs trace (bad magic)".into());
    }
    let mut at = 8;
    let version = u32::from_le_bytes(take(b, &mut at)?);
    let flags = u32::from_le_bytes(take(b, &mut at)?);
    let len = u64::from_le_bytes(take(b, &mut at)?) as usize;
    if version != 1 && version != 2 {
        return Err(format!("trace version {version}, expected 1 or 2"));
    }
    if flags & 1 != 0 {
        return Err(
            "the trace buffer overflowed: events were dropped (mount with a larger trace=)".into(),
        );
    }
    let end = 32usize
        .checked_add(len)
        .filter(|&e| e <= b.len())
        .ok_or("trace shorter than its header says")?;
    let b = &b[..end];
    at = 32;
    let mut ev = Vec::new();
    let mut task = 0u32;
    while at < end {
        let kind = take::<1>(b, &mut at)?[0];
        if version >= 2 && matches!(kind, 3..=5) {
            let t = u32::from_le_bytes(take(b, &mut at)?);
            if t != task {
                task = t;
                ev.push(Event::Task(t));
            }
        }
        let e = match kind {
            1..=4 => {
                let off = u64::from_le_bytes(take(b, &mut at)?);
                let n = u32::from_le_bytes(take(b, &mut at)?) as usize;
                match kind {
                    1 | 3 => {
                        let data = b
                            .get(at..at + n)
                            .ok_or("trace cut short in a store")?
                            .to_vec();
                        at += n;
                        if kind == 1 {
                            Event::Store { off, data }
                        } else {
                            Event::NtStore { off, data }
                        }
                    }
                    2 => Event::Store {
                        off,
                        data: vec![0; n],
                    },
                    _ => Event::Flush { off, len: n as u64 },
                }
            }
            5 => Event::Fence,
            6 => Event::Mark(u64::from_le_bytes(take(b, &mut at)?)),
            k => return Err(format!("unknown event kind {k} at byte {}", at - 1)),
        };
        ev.push(e);
    }
    Ok(ev)
}

/// Serialise events (for tests and synthetic traces).
pub fn write(events: &[Event]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut task = 0u32;
    for e in events {
        match e {
            Event::Store { off, data } | Event::NtStore { off, data } => {
                let nt = matches!(e, Event::NtStore { .. });
                body.push(if nt { 3 } else { 1 });
                if nt {
                    body.extend_from_slice(&task.to_le_bytes());
                }
                body.extend_from_slice(&off.to_le_bytes());
                body.extend_from_slice(&(data.len() as u32).to_le_bytes());
                body.extend_from_slice(data);
            }
            Event::Flush { off, len } => {
                body.push(4);
                body.extend_from_slice(&task.to_le_bytes());
                body.extend_from_slice(&off.to_le_bytes());
                body.extend_from_slice(&(*len as u32).to_le_bytes());
            }
            Event::Fence => {
                body.push(5);
                body.extend_from_slice(&task.to_le_bytes());
            }
            Event::Mark(v) => {
                body.push(6);
                body.extend_from_slice(&v.to_le_bytes());
            }
            Event::Task(t) => task = *t,
        }
    }
    let mut out = b"FERROTRC".to_vec();
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Event> {
        vec![
            Event::Mark(0),
            Event::Store {
                off: 4096,
                data: vec![1, 2, 3],
            },
            Event::NtStore {
                off: 70,
                data: vec![9; 100],
            },
            Event::Flush { off: 4096, len: 3 },
            Event::Fence,
            Event::Task(7),
            Event::Flush { off: 0, len: 64 },
            Event::Fence,
            Event::Task(0),
            Event::Fence,
            Event::Mark(1),
        ]
    }

    #[test]
    fn a_version_1_trace_is_all_task_0() {
        let mut raw = write(&[]);
        raw[8..12].copy_from_slice(&1u32.to_le_bytes());
        raw.push(5);
        raw.push(4);
        raw.extend_from_slice(&64u64.to_le_bytes());
        raw.extend_from_slice(&8u32.to_le_bytes());
        raw[16..24].copy_from_slice(&14u64.to_le_bytes());
        assert_eq!(
            parse(&raw),
            Ok(vec![Event::Fence, Event::Flush { off: 64, len: 8 }])
        );
    }

    #[test]
    fn written_events_parse_back_unchanged() {
        assert_eq!(parse(&write(&sample())), Ok(sample()));
    }

    #[test]
    fn a_zero_event_is_a_store_of_zeros() {
        let mut raw = write(&[]);
        raw.push(2);
        raw.extend_from_slice(&8u64.to_le_bytes());
        raw.extend_from_slice(&5u32.to_le_bytes());
        raw[16..24].copy_from_slice(&13u64.to_le_bytes());
        assert_eq!(
            parse(&raw),
            Ok(vec![Event::Store {
                off: 8,
                data: vec![0; 5]
            }])
        );
    }

    #[test]
    fn overflowed_bad_magic_and_cut_short_traces_are_refused() {
        let good = write(&sample());
        let mut over = good.clone();
        over[12] |= 1;
        assert!(parse(&over).unwrap_err().contains("overflowed"));
        let mut magic = good.clone();
        magic[0] = b'X';
        assert!(parse(&magic).is_err());
        assert!(parse(&good[..good.len() - 1]).is_err());
        let mut cut = good.clone();
        let body = (good.len() - 32 - 2) as u64;
        cut[16..24].copy_from_slice(&body.to_le_bytes());
        assert!(parse(&cut).is_err(), "header length inside the last event");
        let mut kind = write(&[]);
        kind.push(8);
        kind[16..24].copy_from_slice(&1u64.to_le_bytes());
        assert!(parse(&kind).is_err());
    }
}
