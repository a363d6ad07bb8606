//! The kernel log, read through /dev/kmsg from where the run started, and
//! the lines in it that fail a round.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;

/// Any of these in a round's kernel log fails the round (the list of
/// scripts/check.sh, and hung tasks, RCU stalls and Rust panics).
pub const BAD: &[&str] = &[
    "BUG:",
    "WARNING:",
    "Oops",
    "general protection fault",
    "possible circular locking",
    "possible recursive locking",
    "inconsistent lock state",
    "KASAN",
    "UBSAN",
    "sleeping function called from invalid context",
    "Call Trace:",
    "Kernel panic",
    "hung task",
    "hung_task",
    "blocked for more than",
    "detected stall",
    "panicked at",
];

/// Whether a kernel log line fails the round.
pub fn is_bad(line: &str) -> bool {
    BAD.iter().any(|b| line.contains(b))
}

pub struct Kmsg {
    reader: Option<File>,
    writer: Option<File>,
    /// printk_devkmsg as it was, if we changed it.
    devkmsg: Option<String>,
}

const DEVKMSG: &str = "/proc/sys/kernel/printk_devkmsg";

impl Kmsg {
    /// Open the log for reading from its current end, and for writing our
    /// own marker lines. Either may fail (not root, no /dev/kmsg): then the
    /// run has no kernel log, which `available` tells.
    pub fn open() -> Kmsg {
        let reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .and_then(|mut f| f.seek(SeekFrom::End(0)).map(|_| f))
            .ok();
        let writer = OpenOptions::new().write(true).open("/dev/kmsg").ok();
        // Writes to /dev/kmsg are rate limited (10 per 5 s by default): a
        // round's marker line must never be dropped, or a panic would be
        // blamed on an earlier round.
        let devkmsg = std::fs::read_to_string(DEVKMSG)
            .ok()
            .map(|s| s.trim().to_string())
            // The sysctl wants the trailing newline.
            .filter(|s| s == "ratelimit" && std::fs::write(DEVKMSG, "on\n").is_ok());
        Kmsg {
            reader,
            writer,
            devkmsg,
        }
    }

    /// A Kmsg that reads and writes nothing (host dry runs).
    pub fn none() -> Kmsg {
        Kmsg {
            reader: None,
            writer: None,
            devkmsg: None,
        }
    }

    pub fn available(&self) -> bool {
        self.reader.is_some()
    }

    /// The messages logged since the last call (their text only).
    pub fn read_new(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        let Some(f) = self.reader.as_mut() else {
            return out;
        };
        let mut buf = vec![0u8; 16384];
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let rec = String::from_utf8_lossy(&buf[..n]);
                    // "prio,seq,usec,flags;text\n" then " KEY=value" lines.
                    let first = rec.lines().next().unwrap_or("");
                    let text = first.split_once(';').map(|(_, t)| t).unwrap_or(first);
                    out.push(text.to_string());
                }
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {
                    out.push("ferrofuzz: (kernel log records were overwritten)".into());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        out
    }

    /// Log `line` at warning level: it reaches the console, whose log
    /// survives a panic, so the last one names the round that killed the
    /// guest.
    pub fn mark(&mut self, line: &str) {
        if let Some(w) = self.writer.as_mut() {
            let _ = w.write_all(format!("<4>ferrofuzz: {line}\n").as_bytes());
        }
    }
}

impl Drop for Kmsg {
    fn drop(&mut self) {
        if let Some(old) = &self.devkmsg {
            let _ = std::fs::write(DEVKMSG, format!("{old}\n"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_are_the_ones_make_check_fails_on() {
        assert!(is_bad(
            "WARNING: CPU: 1 PID: 77 at fs/inode.c:417 drop_nlink+0x3c/0x50"
        ));
        assert!(is_bad("rust_kernel: panicked at src/sys/vfs.rs:256:28:"));
        assert!(is_bad(
            "INFO: task mount:99 blocked for more than 120 seconds."
        ));
        assert!(!is_bad(
            "ferrofs: inode 12 is corrupt: block pointer past the end"
        ));
        assert!(!is_bad(
            "ferrofuzz: round 3: inode-blocks: inode 12 (/big) blocks 1103 -> 0"
        ));
    }
}
