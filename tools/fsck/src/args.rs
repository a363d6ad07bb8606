//! Command line of fsck.ferrofs.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

pub const USAGE: &str = "\
usage: fsck.ferrofs [-n|-y] [-v] DEVICE|IMAGE

Check a ferrofs filesystem on a block device or an image file.

  -n   check only, never write (the default)
  -y   repair what can be repaired safely (-p and -a are accepted as -y)
  -v   verbose: say what is being checked
  -h   print this help

An unfinished journal transaction (left by a crash) is not an error: -y
rolls it back on the device first, as mount does; -n checks the filesystem
as rolled back. Files unlinked while open (link count 0, no name) are left
for mount to free.

Exit status (as fsck(8), summed): 0 clean, 1 errors corrected,
4 errors left uncorrected, 8 operational error, 16 usage error.";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub repair: bool,
    pub verbose: bool,
    pub device: PathBuf,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Check(Options),
    Help,
}

/// Parses the arguments after the program name, getopt style: short flags may
/// be grouped (`-yv`) and `--` ends the options.
pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Command, String> {
    let mut no = false;
    let mut yes = false;
    let mut verbose = false;
    let mut positional = Vec::new();
    let mut options_done = false;
    for arg in args {
        let bytes = arg.as_bytes();
        if options_done || bytes.len() < 2 || bytes[0] != b'-' {
            positional.push(arg);
            continue;
        }
        if bytes == b"--" {
            options_done = true;
            continue;
        }
        if bytes == b"--help" {
            return Ok(Command::Help);
        }
        if bytes[1] == b'-' {
            return Err(format!("unknown option {}", arg.to_string_lossy()));
        }
        for &c in &bytes[1..] {
            match c {
                b'n' => no = true,
                b'y' | b'p' | b'a' => yes = true,
                b'v' => verbose = true,
                b'h' => return Ok(Command::Help),
                _ => return Err(format!("unknown option -{}", c as char)),
            }
        }
    }
    if no && yes {
        return Err("-n and -y exclude each other".into());
    }
    let device = match positional.len() {
        0 => return Err("no device or image given".into()),
        1 => PathBuf::from(positional.remove(0)),
        _ => return Err("more than one device or image given".into()),
    };
    Ok(Command::Check(Options {
        repair: yes,
        verbose,
        device,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, String> {
        parse(args.iter().map(OsString::from))
    }

    fn opts(repair: bool, verbose: bool, dev: &str) -> Result<Command, String> {
        Ok(Command::Check(Options {
            repair,
            verbose,
            device: dev.into(),
        }))
    }

    #[test]
    fn default_is_read_only() {
        assert_eq!(p(&["img"]), opts(false, false, "img"));
        assert_eq!(p(&["-n", "img"]), opts(false, false, "img"));
    }

    #[test]
    fn flags_may_be_grouped_and_follow_the_device() {
        assert_eq!(p(&["-yv", "img"]), opts(true, true, "img"));
        assert_eq!(p(&["img", "-v", "-y"]), opts(true, true, "img"));
        assert_eq!(p(&["-p", "img"]), opts(true, false, "img"));
    }

    #[test]
    fn double_dash_ends_options() {
        assert_eq!(p(&["--", "-img"]), opts(false, false, "-img"));
    }

    #[test]
    fn help_is_recognised() {
        assert_eq!(p(&["-h"]), Ok(Command::Help));
        assert_eq!(p(&["--help", "img"]), Ok(Command::Help));
    }

    #[test]
    fn bad_command_lines_are_errors() {
        assert!(p(&[]).is_err());
        assert!(p(&["a", "b"]).is_err());
        assert!(p(&["-n", "-y", "img"]).is_err());
        assert!(p(&["-x", "img"]).is_err());
        assert!(p(&["--yes", "img"]).is_err());
    }
}
