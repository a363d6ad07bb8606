//! Command line parsing.

use std::ffi::OsString;
use std::path::PathBuf;

pub const USAGE: &str = "\
usage: ferrobench run --dir DIR [--fs NAME] [--json FILE] [--quick] [--cases 1,2,...]
       ferrobench fsync-scaling --dir DIR [--max-mib N] [--samples N]
                                [--page first|last|random]
       ferrobench help

run: runs the benchmark cases in DIR, a directory on the mounted filesystem
  under test (it must have ~800 MiB free), prints a progress line per series
  to stderr and a summary to stdout, and writes every sample to --json FILE.
  --fs names the filesystem in the output (default: the last component of
  DIR). --quick takes fewer samples (`make bench` uses it). --cases runs only
  the numbered cases:
    1  fsync after storing to N pages through a MAP_SHARED mapping
       (spread over a 256 MiB file, or as runs inside 2 MiB regions)
    2  fsync of 1 dirty page in files of 4 KiB .. the largest that fits
    3  fsync with nothing dirty
    4  msync(MS_SYNC) of 64 KiB inside a dirty 64 MiB mapping
    5  first-touch page faults (read, write, write to holes), pages/s
    6  4 KiB append + fsync, 4 KiB overwrite + fdatasync, ops/s
    7  create + fsync, rename, unlink of small files, ops/s
    8  the floor: case 1's cache lines flushed from user space (clwb +
       sfence), no filesystem call
    9  persist 64 B / 4 KiB stores at random pages of a 64 MiB file: through
       a MAP_SYNC mapping with clwb + sfence (PMDK's pmem_persist), and
       through a plain shared mapping with msync(MS_SYNC) of the page
       (what PMDK does without MAP_SYNC), ops/s
   10  fio's libpmem engine, 4 KiB random writes over 64 MiB, IOPS
   11  bulk I/O as dd bs=1M: write a new 256 MiB file, overwrite it
       (1 MiB pwrites + fsync), read it (1 MiB preads), MiB/s
   12  a new 256 MiB file on the fresh file system and after aging it (3
       rounds of filling to 85% with files of 4 KiB-16 MiB and deleting
       three quarters): PMD-mappable share (FIEMAP), read faults, fsync of
       256 spread pages. Runs last and leaves the file system aged
   13  scaling, 1 and 2 threads (and nproc): write faults over separate
       files and one shared file, 4 KiB append + fsync to separate files,
       create + fsync in separate directories and in one; totals and the
       2-thread / 1-thread ratio (one per turn of 1 then 2 threads), with
       two references with no file system (getppid, anonymous faults)
fsync-scaling: case 2 alone (files of 4 KiB, 64 MiB, 256 MiB and the
  largest that fits, at most --max-mib, default 768; --samples per size,
  default 15), then the ratio of the largest file's median fsync time to the
  4 KiB file's. Near 1: fsync cost follows the dirty data, not the file
  size. The dirty page is the file's first page (the default: the same page
  at every size), its last page, or a random page per sample.";

#[derive(Debug, PartialEq, Eq)]
pub struct RunArgs {
    pub dir: PathBuf,
    pub fs: String,
    pub json: Option<PathBuf>,
    pub quick: bool,
    pub cases: Vec<u32>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct ScalingArgs {
    pub dir: PathBuf,
    pub max_mib: u64,
    pub samples: usize,
    pub page: PagePick,
}

/// Which page case 2 dirties before each fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PagePick {
    First,
    Last,
    Random,
}

impl PagePick {
    pub fn name(self) -> &'static str {
        match self {
            PagePick::First => "first",
            PagePick::Last => "last",
            PagePick::Random => "random",
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Help,
    Run(RunArgs),
    FsyncScaling(ScalingArgs),
}

pub const ALL_CASES: [u32; 13] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];

fn take(it: &mut impl Iterator<Item = String>, opt: &str) -> Result<String, String> {
    it.next().ok_or_else(|| format!("{opt} needs a value"))
}

fn number<T: std::str::FromStr>(s: &str, opt: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("{opt}: not a number: {s}"))
}

fn parse_cases(s: &str) -> Result<Vec<u32>, String> {
    let mut v = Vec::new();
    for part in s.split(',') {
        let n: u32 = number(part.trim(), "--cases")?;
        if !ALL_CASES.contains(&n) {
            return Err(format!("--cases: no case {n} (1..13)"));
        }
        if !v.contains(&n) {
            v.push(n);
        }
    }
    v.sort_unstable();
    Ok(v)
}

fn default_fs_name(dir: &std::path::Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "fs".to_string())
}

pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let mut it = args
        .into_iter()
        .map(|a| a.into_string().unwrap_or_default());
    let cmd = it.next().ok_or("no command")?;
    match cmd.as_str() {
        "help" | "-h" | "--help" => Ok(Command::Help),
        "run" => {
            let (mut dir, mut fs, mut json, mut quick, mut cases) =
                (None, None, None, false, ALL_CASES.to_vec());
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--dir" => dir = Some(PathBuf::from(take(&mut it, &a)?)),
                    "--fs" => fs = Some(take(&mut it, &a)?),
                    "--json" => json = Some(PathBuf::from(take(&mut it, &a)?)),
                    "--quick" => quick = true,
                    "--cases" => cases = parse_cases(&take(&mut it, &a)?)?,
                    _ => return Err(format!("run: unknown argument {a}")),
                }
            }
            let dir = dir.ok_or("run: --dir is required")?;
            let fs = fs.unwrap_or_else(|| default_fs_name(&dir));
            Ok(Command::Run(RunArgs {
                dir,
                fs,
                json,
                quick,
                cases,
            }))
        }
        "fsync-scaling" => {
            let (mut dir, mut max_mib, mut samples, mut page) = (None, 768, 15, PagePick::First);
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--dir" => dir = Some(PathBuf::from(take(&mut it, &a)?)),
                    "--max-mib" => max_mib = number(&take(&mut it, &a)?, &a)?,
                    "--samples" => samples = number(&take(&mut it, &a)?, &a)?,
                    "--page" => {
                        page = match take(&mut it, &a)?.as_str() {
                            "first" => PagePick::First,
                            "last" => PagePick::Last,
                            "random" => PagePick::Random,
                            o => return Err(format!("--page: first, last or random, not {o}")),
                        }
                    }
                    _ => return Err(format!("fsync-scaling: unknown argument {a}")),
                }
            }
            if max_mib < 256 {
                return Err("fsync-scaling: --max-mib must be at least 256".to_string());
            }
            if samples == 0 {
                return Err("fsync-scaling: --samples must be at least 1".to_string());
            }
            Ok(Command::FsyncScaling(ScalingArgs {
                dir: dir.ok_or("fsync-scaling: --dir is required")?,
                max_mib,
                samples,
                page,
            }))
        }
        other => Err(format!("unknown command {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, String> {
        parse(s.split_whitespace().map(OsString::from))
    }

    #[test]
    fn run_defaults() {
        assert_eq!(
            p("run --dir /mnt/test").unwrap(),
            Command::Run(RunArgs {
                dir: "/mnt/test".into(),
                fs: "test".into(),
                json: None,
                quick: false,
                cases: ALL_CASES.to_vec(),
            })
        );
    }

    #[test]
    fn run_options() {
        assert_eq!(
            p("run --quick --dir /d --fs ext4 --json /o/x.json --cases 8,1,1").unwrap(),
            Command::Run(RunArgs {
                dir: "/d".into(),
                fs: "ext4".into(),
                json: Some("/o/x.json".into()),
                quick: true,
                cases: vec![1, 8],
            })
        );
    }

    #[test]
    fn scaling() {
        assert_eq!(
            p("fsync-scaling --dir /d --max-mib 512").unwrap(),
            Command::FsyncScaling(ScalingArgs {
                dir: "/d".into(),
                max_mib: 512,
                samples: 15,
                page: PagePick::First,
            })
        );
        assert_eq!(
            p("fsync-scaling --page random --samples 5 --dir /d").unwrap(),
            Command::FsyncScaling(ScalingArgs {
                dir: "/d".into(),
                max_mib: 768,
                samples: 5,
                page: PagePick::Random,
            })
        );
    }

    #[test]
    fn errors() {
        assert!(p("run").is_err());
        assert!(p("run --dir").is_err());
        assert!(p("run --dir /d --cases 14").is_err());
        assert!(p("run --dir /d --cases x").is_err());
        assert!(p("run --dir /d --bogus").is_err());
        assert!(p("fsync-scaling --dir /d --max-mib 10").is_err());
        assert!(p("fsync-scaling --dir /d --samples 0").is_err());
        assert!(p("fsync-scaling --dir /d --page middle").is_err());
        assert!(p("frobnicate").is_err());
        assert!(p("").is_err());
        assert_eq!(p("help").unwrap(), Command::Help);
    }
}
