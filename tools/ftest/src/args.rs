//! Command line parsing.

use std::ffi::OsString;
use std::path::PathBuf;

pub const USAGE: &str = "\
usage: ferrotest list
       ferrotest run [--dir DIR] [--stats DIR | --no-counters] [NAME...]
       ferrotest fill FILE SEED LEN
       ferrotest verify FILE SEED LEN
       ferrotest mmap-fill FILE SEED LEN [--sync=msync|fsync|none|unmap|syncfs|mapsync]
       ferrotest sbpatch DEV FIELD VALUE [--fix-csum]
       ferrotest flipbyte DEV OFFSET
       ferrotest cut-symlink-block DEV INO
       ferrotest crash-workload --seed S --ops N --dir DIR [--mark FILE] [--threads T]

run: runs the named cases (all if none) in DIR (default: the current
  directory, which should be on a mounted ferrofs), each in its own process,
  and prints TAP. Counters are read from --stats DIR (default: the entry of
  /sys/fs/ferrofs for DIR's device); --no-counters skips the counter checks.
  Exit status 0 if no case failed, 1 otherwise.
  Environment: FERROTEST_STRESS_SECS (default 15), FERROTEST_SEED,
  FERROTEST_COHERENCE_SECS (the coherence stresses and the truncate/O_DIRECT
  stress, default 6), FERROTEST_ODIRECT_DEV (the unmounted block device the
  O_DIRECT cases overwrite the first 10 MiB of, default /dev/pmem1; opened
  O_EXCL, the cases skip if that fails).
fill/verify: write (write(2), then fsync) or check LEN bytes of the pattern
  of SEED. mmap-fill: the same through a MAP_SHARED mapping, then msync
  (default), fsync, none (munmap, then fsync), unmap (munmap only: the
  stores stay marked for a later sync) or syncfs (syncfs(2) only).
sbpatch: set FIELD (magic, version, blocks_count, block_size) of the ferrofs
  superblock at offset 0 of DEV; the checksum is left stale unless --fix-csum.
flipbyte: invert every bit of the byte at OFFSET of DEV.
cut-symlink-block: on the unmounted DEV, free the target block of symlink
  inode INO (pointer, block count, checksum, bitmap bit): what eviction's
  first transaction leaves of an unlinked symlink.
crash-workload: run the N operations of the persistence checker's workload
  for seed S (ferrofs-crashwl) under DIR, each data change followed by
  fsync; with --mark, write 2k to FILE before operation k and 2k+1 after it.
  --threads T (1 to 4) runs T such workloads at once, thread t with seed
  S + t under its own directory (w, w1, ...), its markers t * 2^32 + 2k
  and t * 2^32 + 2k + 1.
Numbers are decimal or 0x hex; LEN and OFFSET take K, M, G suffixes.";

#[derive(Debug, PartialEq, Eq)]
pub struct RunArgs {
    pub dir: PathBuf,
    pub stats: Option<PathBuf>,
    pub no_counters: bool,
    pub names: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    Msync,
    Fsync,
    None,
    /// munmap only: no system call makes the stores durable; a later
    /// sync, remount or umount must find their marks.
    Unmap,
    /// syncfs(2) while the mapping is still there; no fsync or msync.
    Syncfs,
    /// A MAP_SYNC mapping; the stores are made durable from user space
    /// (clwb or clflushopt, then sfence): no system call after the stores.
    MapSync,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SbField {
    Magic,
    Version,
    BlocksCount,
    BlockSize,
}

impl SbField {
    pub fn name(self) -> &'static str {
        match self {
            SbField::Magic => "magic",
            SbField::Version => "version",
            SbField::BlocksCount => "blocks_count",
            SbField::BlockSize => "block_size",
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Help,
    List,
    Run(RunArgs),
    Fill {
        file: PathBuf,
        seed: u64,
        len: u64,
    },
    Verify {
        file: PathBuf,
        seed: u64,
        len: u64,
    },
    MmapFill {
        file: PathBuf,
        seed: u64,
        len: u64,
        sync: SyncMode,
    },
    SbPatch {
        dev: PathBuf,
        field: SbField,
        value: String,
        fix_csum: bool,
    },
    FlipByte {
        dev: PathBuf,
        offset: u64,
    },
    CutSymlinkBlock {
        dev: PathBuf,
        ino: u32,
    },
    CrashWorkload {
        seed: u64,
        ops: usize,
        dir: PathBuf,
        mark: Option<PathBuf>,
        threads: usize,
    },
}

/// A decimal or `0x` hexadecimal u64.
pub fn parse_num(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("not a number: {s:?}"))
}

/// A number with an optional binary K, M or G suffix.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (num, shift) = match s.as_bytes().last() {
        Some(b'k' | b'K') => (&s[..s.len() - 1], 10),
        Some(b'm' | b'M') => (&s[..s.len() - 1], 20),
        Some(b'g' | b'G') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let n = parse_num(num).map_err(|_| format!("not a size: {s:?}"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("too large: {s:?}"))
}

fn utf8(a: &OsString) -> Result<&str, String> {
    a.to_str()
        .ok_or_else(|| format!("argument is not UTF-8: {a:?}"))
}

/// An option and its value, if it has one.
type Opt = (String, Option<OsString>);

/// Splits `args` into options (`--x`, `--x=v`) and positionals; `valued`
/// options take the next argument when written without `=`.
fn split(args: &[OsString], valued: &[&str]) -> Result<(Vec<Opt>, Vec<OsString>), String> {
    let mut opts = Vec::new();
    let mut pos = Vec::new();
    let mut it = args.iter();
    let mut only_pos = false;
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if only_pos || !s.starts_with("--") {
            pos.push(a.clone());
            continue;
        }
        if s == "--" {
            only_pos = true;
            continue;
        }
        let s = utf8(a)?;
        if let Some((k, v)) = s.split_once('=') {
            opts.push((k.to_string(), Some(OsString::from(v))));
        } else if valued.contains(&s) {
            let v = it.next().ok_or_else(|| format!("{s} needs a value"))?;
            opts.push((s.to_string(), Some(v.clone())));
        } else {
            opts.push((s.to_string(), None));
        }
    }
    Ok((opts, pos))
}

fn want_positionals(cmd: &str, pos: &[OsString], n: usize) -> Result<(), String> {
    if pos.len() != n {
        return Err(format!("{cmd}: expected {n} arguments, got {}", pos.len()));
    }
    Ok(())
}

fn no_options(cmd: &str, opts: &[Opt]) -> Result<(), String> {
    match opts.first() {
        Some((k, _)) => Err(format!("{cmd}: unknown option {k}")),
        None => Ok(()),
    }
}

pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let args: Vec<OsString> = args.into_iter().collect();
    let Some(cmd) = args.first() else {
        return Err("no command".into());
    };
    let cmd = utf8(cmd)?;
    let rest = &args[1..];
    match cmd {
        "help" | "-h" | "--help" => Ok(Command::Help),
        "list" => {
            let (opts, pos) = split(rest, &[])?;
            no_options(cmd, &opts)?;
            want_positionals(cmd, &pos, 0)?;
            Ok(Command::List)
        }
        "run" => {
            let (opts, pos) = split(rest, &["--dir", "--stats"])?;
            let mut r = RunArgs {
                dir: PathBuf::from("."),
                stats: None,
                no_counters: false,
                names: Vec::new(),
            };
            for (k, v) in opts {
                match (k.as_str(), v) {
                    ("--dir", Some(v)) => r.dir = v.into(),
                    ("--stats", Some(v)) => r.stats = Some(v.into()),
                    ("--no-counters", None) => r.no_counters = true,
                    (k, _) => return Err(format!("run: unknown option {k}")),
                }
            }
            if r.no_counters && r.stats.is_some() {
                return Err("run: --stats and --no-counters exclude each other".into());
            }
            for p in &pos {
                r.names.push(utf8(p)?.to_string());
            }
            Ok(Command::Run(r))
        }
        "fill" | "verify" | "mmap-fill" => {
            let (opts, pos) = split(rest, &["--sync"])?;
            want_positionals(cmd, &pos, 3)?;
            let file = PathBuf::from(&pos[0]);
            let seed = parse_num(utf8(&pos[1])?)?;
            let len = parse_size(utf8(&pos[2])?)?;
            if cmd != "mmap-fill" {
                no_options(cmd, &opts)?;
                return Ok(if cmd == "fill" {
                    Command::Fill { file, seed, len }
                } else {
                    Command::Verify { file, seed, len }
                });
            }
            let mut sync = SyncMode::Msync;
            for (k, v) in opts {
                let v = match (k.as_str(), &v) {
                    ("--sync", Some(v)) => utf8(v)?.to_string(),
                    (k, _) => return Err(format!("mmap-fill: unknown option {k}")),
                };
                sync = match v.as_str() {
                    "msync" => SyncMode::Msync,
                    "fsync" => SyncMode::Fsync,
                    "none" => SyncMode::None,
                    "unmap" => SyncMode::Unmap,
                    "syncfs" => SyncMode::Syncfs,
                    "mapsync" => SyncMode::MapSync,
                    _ => {
                        return Err(format!(
                            "mmap-fill: --sync must be msync, fsync, none, unmap, syncfs or mapsync, not {v:?}"
                        ))
                    }
                };
            }
            Ok(Command::MmapFill {
                file,
                seed,
                len,
                sync,
            })
        }
        "sbpatch" => {
            let (opts, pos) = split(rest, &[])?;
            want_positionals(cmd, &pos, 3)?;
            let mut fix_csum = false;
            for (k, v) in opts {
                match (k.as_str(), v) {
                    ("--fix-csum", None) => fix_csum = true,
                    (k, _) => return Err(format!("sbpatch: unknown option {k}")),
                }
            }
            let field = match utf8(&pos[1])? {
                "magic" => SbField::Magic,
                "version" => SbField::Version,
                "blocks_count" => SbField::BlocksCount,
                "block_size" => SbField::BlockSize,
                f => {
                    return Err(format!(
                        "sbpatch: unknown field {f:?} (magic, version, blocks_count, block_size)"
                    ))
                }
            };
            Ok(Command::SbPatch {
                dev: PathBuf::from(&pos[0]),
                field,
                value: utf8(&pos[2])?.to_string(),
                fix_csum,
            })
        }
        "flipbyte" => {
            let (opts, pos) = split(rest, &[])?;
            no_options(cmd, &opts)?;
            want_positionals(cmd, &pos, 2)?;
            Ok(Command::FlipByte {
                dev: PathBuf::from(&pos[0]),
                offset: parse_size(utf8(&pos[1])?)?,
            })
        }
        "cut-symlink-block" => {
            let (opts, pos) = split(rest, &[])?;
            no_options(cmd, &opts)?;
            want_positionals(cmd, &pos, 2)?;
            let ino = parse_num(utf8(&pos[1])?)?;
            Ok(Command::CutSymlinkBlock {
                dev: PathBuf::from(&pos[0]),
                ino: u32::try_from(ino).map_err(|_| format!("inode number {ino} too large"))?,
            })
        }
        "crash-workload" => {
            let (opts, pos) = split(rest, &["--seed", "--ops", "--dir", "--mark", "--threads"])?;
            want_positionals(cmd, &pos, 0)?;
            let (mut seed, mut ops, mut dir, mut mark) = (None, None, None, None);
            let mut threads = 1;
            for (k, v) in opts {
                match (k.as_str(), v) {
                    ("--seed", Some(v)) => seed = Some(parse_num(utf8(&v)?)?),
                    ("--ops", Some(v)) => ops = Some(parse_num(utf8(&v)?)? as usize),
                    ("--dir", Some(v)) => dir = Some(PathBuf::from(v)),
                    ("--mark", Some(v)) => mark = Some(PathBuf::from(v)),
                    ("--threads", Some(v)) => {
                        threads = parse_num(utf8(&v)?)? as usize;
                        if !(1..=4).contains(&threads) {
                            return Err(format!("{cmd}: --threads takes 1 to 4"));
                        }
                    }
                    (k, _) => return Err(format!("{cmd}: unknown option {k}")),
                }
            }
            match (seed, ops, dir) {
                (Some(seed), Some(ops), Some(dir)) => Ok(Command::CrashWorkload {
                    seed,
                    ops,
                    dir,
                    mark,
                    threads,
                }),
                _ => Err(format!("{cmd}: --seed, --ops and --dir are required")),
            }
        }
        _ => Err(format!("unknown command {cmd:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, String> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_num("0"), Ok(0));
        assert_eq!(parse_num("4096"), Ok(4096));
        assert_eq!(parse_num("0x10"), Ok(16));
        assert_eq!(parse_num("0XfF"), Ok(255));
        assert!(parse_num("").is_err());
        assert!(parse_num("-1").is_err());
        assert!(parse_num("1k").is_err());
        assert_eq!(parse_size("1k"), Ok(1024));
        assert_eq!(parse_size("3M"), Ok(3 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("0x1000"), Ok(4096));
        assert!(parse_size("K").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
        assert!(parse_size("17179869184G").is_err());
    }

    #[test]
    fn run_options() {
        assert_eq!(
            p(&["run"]),
            Ok(Command::Run(RunArgs {
                dir: ".".into(),
                stats: None,
                no_counters: false,
                names: vec![],
            }))
        );
        assert_eq!(
            p(&[
                "run",
                "--dir",
                "/mnt",
                "--stats=/sys/fs/ferrofs/pmem0",
                "a",
                "b"
            ]),
            Ok(Command::Run(RunArgs {
                dir: "/mnt".into(),
                stats: Some("/sys/fs/ferrofs/pmem0".into()),
                no_counters: false,
                names: vec!["a".into(), "b".into()],
            }))
        );
        let Ok(Command::Run(r)) = p(&["run", "x", "--no-counters", "--dir=/tmp"]) else {
            panic!()
        };
        assert!(r.no_counters);
        assert_eq!(r.dir, PathBuf::from("/tmp"));
        assert_eq!(r.names, vec!["x".to_string()]);
        assert!(p(&["run", "--stats", "s", "--no-counters"]).is_err());
        assert!(p(&["run", "--dir"]).is_err());
        assert!(p(&["run", "--bogus"]).is_err());
        assert!(p(&["run", "--no-counters=1"]).is_err());
    }

    #[test]
    fn data_commands() {
        assert_eq!(
            p(&["fill", "/f", "7", "1M"]),
            Ok(Command::Fill {
                file: "/f".into(),
                seed: 7,
                len: 1 << 20
            })
        );
        assert_eq!(
            p(&["verify", "/f", "0x7", "10"]),
            Ok(Command::Verify {
                file: "/f".into(),
                seed: 7,
                len: 10
            })
        );
        assert!(p(&["fill", "/f", "7"]).is_err());
        assert!(p(&["fill", "/f", "7", "1", "--sync=none"]).is_err());
        for (arg, mode) in [
            ("--sync=msync", SyncMode::Msync),
            ("--sync=fsync", SyncMode::Fsync),
            ("--sync=none", SyncMode::None),
            ("--sync=syncfs", SyncMode::Syncfs),
            ("--sync=mapsync", SyncMode::MapSync),
        ] {
            assert_eq!(
                p(&["mmap-fill", "/f", "1", "8192", arg]),
                Ok(Command::MmapFill {
                    file: "/f".into(),
                    seed: 1,
                    len: 8192,
                    sync: mode
                })
            );
        }
        let Ok(Command::MmapFill { sync, .. }) =
            p(&["mmap-fill", "--sync", "none", "/f", "1", "2"])
        else {
            panic!()
        };
        assert_eq!(sync, SyncMode::None);
        assert!(p(&["mmap-fill", "/f", "1", "2", "--sync=later"]).is_err());
    }

    #[test]
    fn device_commands() {
        assert_eq!(
            p(&["sbpatch", "/dev/pmem0", "magic", "XERROFS", "--fix-csum"]),
            Ok(Command::SbPatch {
                dev: "/dev/pmem0".into(),
                field: SbField::Magic,
                value: "XERROFS".into(),
                fix_csum: true
            })
        );
        let Ok(Command::SbPatch {
            field, fix_csum, ..
        }) = p(&["sbpatch", "img", "block_size", "512"])
        else {
            panic!()
        };
        assert_eq!((field, fix_csum), (SbField::BlockSize, false));
        assert!(p(&["sbpatch", "img", "label", "x"]).is_err());
        assert!(p(&["sbpatch", "img", "version"]).is_err());
        assert_eq!(
            p(&["flipbyte", "img", "0x200"]),
            Ok(Command::FlipByte {
                dev: "img".into(),
                offset: 512
            })
        );
        assert!(p(&["flipbyte", "img"]).is_err());
        assert!(p(&[]).is_err());
        assert!(p(&["frobnicate"]).is_err());
        assert_eq!(p(&["--help"]), Ok(Command::Help));
        assert_eq!(p(&["list"]), Ok(Command::List));
    }

    #[test]
    fn crash_workload_needs_seed_ops_and_dir_and_takes_an_optional_mark() {
        assert_eq!(
            p(&[
                "crash-workload",
                "--seed",
                "7",
                "--ops=300",
                "--dir",
                "/mnt"
            ]),
            Ok(Command::CrashWorkload {
                seed: 7,
                ops: 300,
                dir: "/mnt".into(),
                mark: None,
                threads: 1
            })
        );
        assert_eq!(
            p(&[
                "crash-workload",
                "--mark",
                "/sys/fs/ferrofs/pmem0/trace_mark",
                "--dir=/mnt/w0",
                "--seed=0x10",
                "--ops",
                "5"
            ]),
            Ok(Command::CrashWorkload {
                seed: 16,
                ops: 5,
                dir: "/mnt/w0".into(),
                mark: Some("/sys/fs/ferrofs/pmem0/trace_mark".into()),
                threads: 1
            })
        );
        assert!(p(&["crash-workload", "--seed", "1", "--ops", "2"]).is_err());
        assert!(p(&["crash-workload", "--seed", "1", "--dir", "/d"]).is_err());
        assert!(p(&["crash-workload", "--ops", "1", "--dir", "/d"]).is_err());
        assert!(p(&["crash-workload", "--seed", "x", "--ops", "1", "--dir", "/d"]).is_err());
        assert!(p(&[
            "crash-workload",
            "--seed",
            "1",
            "--ops",
            "1",
            "--dir",
            "/d",
            "extra"
        ])
        .is_err());
        assert!(p(&[
            "crash-workload",
            "--seed",
            "1",
            "--ops",
            "1",
            "--dir",
            "/d",
            "--bogus"
        ])
        .is_err());
        assert!(p(&["crash-workload", "--seed"]).is_err());
    }
}
