//! The per-mount DAX counters ferrofs exports, e.g. under
//! /sys/fs/ferrofs/pmem0: one decimal u64 per file, plus `flush_insn`.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Faults,
    WriteFaults,
    PfnMkwrite,
    EntriesMarked,
    FsyncCalls,
    EntriesFlushed,
    LinesFlushed,
    RevalidateDrops,
    EntriesRemoved,
}

impl Field {
    pub const ALL: [Field; 9] = [
        Field::Faults,
        Field::WriteFaults,
        Field::PfnMkwrite,
        Field::EntriesMarked,
        Field::FsyncCalls,
        Field::EntriesFlushed,
        Field::LinesFlushed,
        Field::RevalidateDrops,
        Field::EntriesRemoved,
    ];

    /// The file name under the counter directory.
    pub fn name(self) -> &'static str {
        match self {
            Field::Faults => "faults",
            Field::WriteFaults => "write_faults",
            Field::PfnMkwrite => "pfn_mkwrite",
            Field::EntriesMarked => "entries_marked",
            Field::FsyncCalls => "fsync_calls",
            Field::EntriesFlushed => "entries_flushed",
            Field::LinesFlushed => "lines_flushed",
            Field::RevalidateDrops => "revalidate_drops",
            Field::EntriesRemoved => "entries_removed",
        }
    }
}

/// The cache-line flush instructions ferrofs may report.
pub const FLUSH_INSNS: [&str; 3] = ["clwb", "clflushopt", "clflush"];

/// One reading of all counters (file by file, so not an atomic snapshot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counters {
    values: [u64; 9],
    pub flush_insn: String,
}

impl Counters {
    pub fn read(dir: &Path) -> Result<Counters, String> {
        Counters::from_source(|name| {
            let p: PathBuf = dir.join(name);
            std::fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        })
    }

    /// Builds a reading from `get(file name) -> file content`.
    pub fn from_source(
        mut get: impl FnMut(&str) -> Result<String, String>,
    ) -> Result<Counters, String> {
        let mut values = [0u64; 9];
        for (v, f) in values.iter_mut().zip(Field::ALL) {
            *v = parse_counter(f.name(), &get(f.name())?)?;
        }
        let flush_insn = get("flush_insn")?.trim().to_string();
        Ok(Counters { values, flush_insn })
    }

    pub fn get(&self, f: Field) -> u64 {
        self.values[f as usize]
    }

    /// `entries_flushed + revalidate_drops + entries_removed <= entries_marked`,
    /// or why not.
    pub fn invariant_violation(&self) -> Option<String> {
        let gone = self.get(Field::EntriesFlushed) as u128
            + self.get(Field::RevalidateDrops) as u128
            + self.get(Field::EntriesRemoved) as u128;
        let marked = self.get(Field::EntriesMarked) as u128;
        (gone > marked).then(|| {
            format!(
                "entries_flushed ({}) + revalidate_drops ({}) + entries_removed ({}) = {gone} \
                 > entries_marked ({marked})",
                self.get(Field::EntriesFlushed),
                self.get(Field::RevalidateDrops),
                self.get(Field::EntriesRemoved),
            )
        })
    }
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for fld in Field::ALL {
            write!(f, "{}={} ", fld.name(), self.get(fld))?;
        }
        write!(f, "flush_insn={}", self.flush_insn)
    }
}

/// Parses the content of one counter file: a decimal u64 and a newline.
pub fn parse_counter(name: &str, text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("counter {name}: not a decimal number: {text:?}"));
    }
    t.parse()
        .map_err(|e| format!("counter {name}: {e}: {text:?}"))
}

pub fn valid_flush_insn(s: &str) -> bool {
    FLUSH_INSNS.contains(&s)
}

/// `after - before` of the sum of `fields`, signed (a counter going down is
/// a finding too).
pub fn delta(before: &Counters, after: &Counters, fields: &[Field]) -> i128 {
    fields
        .iter()
        .map(|&f| after.get(f) as i128 - before.get(f) as i128)
        .sum()
}

/// `+10`, `+0`, `-3`.
pub fn fmt_delta(d: i128) -> String {
    if d < 0 {
        d.to_string()
    } else {
        format!("+{d}")
    }
}

/// The label of a sum of counters: `write_faults+pfn_mkwrite`.
pub fn label(fields: &[Field]) -> String {
    fields
        .iter()
        .map(|f| f.name())
        .collect::<Vec<_>>()
        .join("+")
}

/// `None` if `actual == expected`, else the diagnostic
/// `entries_flushed: expected +10, got +11 (after fsync)`.
pub fn delta_mismatch(label: &str, expected: i128, actual: i128, step: &str) -> Option<String> {
    (expected != actual).then(|| {
        format!(
            "{label}: expected {}, got {} ({step})",
            fmt_delta(expected),
            fmt_delta(actual)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn source(pairs: &[(&str, &str)]) -> impl FnMut(&str) -> Result<String, String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| m.get(name).cloned().ok_or_else(|| format!("no {name}"))
    }

    fn sample(marked: &str, flushed: &str, removed: &str) -> Vec<(&'static str, String)> {
        vec![
            ("faults", "5\n".into()),
            ("write_faults", "3\n".into()),
            ("pfn_mkwrite", "2\n".into()),
            ("entries_marked", format!("{marked}\n")),
            ("fsync_calls", "1\n".into()),
            ("entries_flushed", format!("{flushed}\n")),
            ("lines_flushed", "640\n".into()),
            ("revalidate_drops", "0\n".into()),
            ("entries_removed", format!("{removed}\n")),
            ("flush_insn", "clwb\n".into()),
        ]
    }

    fn read(v: &[(&str, String)]) -> Result<Counters, String> {
        let pairs: Vec<(&str, &str)> = v.iter().map(|(k, s)| (*k, s.as_str())).collect();
        Counters::from_source(source(&pairs))
    }

    #[test]
    fn parses_counter_files() {
        assert_eq!(parse_counter("x", "0\n"), Ok(0));
        assert_eq!(parse_counter("x", " 18446744073709551615\n"), Ok(u64::MAX));
        assert!(parse_counter("x", "").is_err());
        assert!(parse_counter("x", "-1\n").is_err());
        assert!(parse_counter("x", "+1").is_err());
        assert!(parse_counter("x", "12 13").is_err());
        assert!(parse_counter("x", "18446744073709551616").is_err());
        assert!(parse_counter("x", "0x10").is_err());
    }

    #[test]
    fn reads_a_directory_listing() {
        let c = read(&sample("10", "7", "2")).unwrap();
        assert_eq!(c.get(Field::Faults), 5);
        assert_eq!(c.get(Field::EntriesMarked), 10);
        assert_eq!(c.get(Field::LinesFlushed), 640);
        assert_eq!(c.get(Field::EntriesRemoved), 2);
        assert_eq!(c.flush_insn, "clwb");
        assert!(valid_flush_insn(&c.flush_insn));
        assert!(!valid_flush_insn("clwb "));
        assert!(!valid_flush_insn("sfence"));
        assert!(c.to_string().starts_with("faults=5 write_faults=3 "));
        assert!(c.to_string().ends_with("flush_insn=clwb"));

        let mut missing = sample("1", "0", "0");
        missing.retain(|(k, _)| *k != "fsync_calls");
        assert_eq!(read(&missing), Err("no fsync_calls".into()));
        let mut bad = sample("1", "0", "0");
        bad[0].1 = "lots".into();
        assert!(read(&bad).unwrap_err().contains("faults"));
    }

    #[test]
    fn invariant() {
        assert_eq!(
            read(&sample("10", "8", "2")).unwrap().invariant_violation(),
            None
        );
        let v = read(&sample("10", "9", "2")).unwrap().invariant_violation();
        assert!(v.unwrap().contains("= 11 > entries_marked (10)"));
        // No overflow with huge values.
        let m = u64::MAX.to_string();
        assert!(read(&sample(&m, &m, &m))
            .unwrap()
            .invariant_violation()
            .is_some());
    }

    #[test]
    fn deltas_and_messages() {
        let a = read(&sample("10", "0", "0")).unwrap();
        let b = read(&sample("21", "11", "0")).unwrap();
        assert_eq!(delta(&a, &b, &[Field::EntriesFlushed]), 11);
        assert_eq!(delta(&b, &a, &[Field::EntriesFlushed]), -11);
        assert_eq!(
            delta(&a, &b, &[Field::EntriesFlushed, Field::EntriesMarked]),
            22
        );
        assert_eq!(fmt_delta(0), "+0");
        assert_eq!(fmt_delta(-3), "-3");
        assert_eq!(
            label(&[Field::WriteFaults, Field::PfnMkwrite]),
            "write_faults+pfn_mkwrite"
        );
        assert_eq!(delta_mismatch("entries_flushed", 10, 10, "fsync"), None);
        assert_eq!(
            delta_mismatch("entries_flushed", 10, 11, "after fsync").unwrap(),
            "entries_flushed: expected +10, got +11 (after fsync)"
        );
    }
}
