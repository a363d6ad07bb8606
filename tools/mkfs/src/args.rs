//! Command line of mkfs.ferrofs.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

pub const USAGE: &str = "\
usage: mkfs.ferrofs [-L label] [-f] [-N inodes] [-b 4096] [-q] DEVICE|IMAGE [BLOCKS]

Create a ferrofs filesystem on a block device or an image file.

  -L label   volume label, at most 31 bytes
  -f         overwrite an existing filesystem without asking
  -N inodes  number of inodes (rounded up to a whole inode table block)
  -b size    block size: ferrofs has 4096-byte blocks only (4096 or 4k)
  -q         quiet: print nothing on success
  -h         print this help
  BLOCKS     use only the first BLOCKS blocks of 4096 bytes (default: all)

Without -f, a device that holds a file system is formatted only when the
answer read from standard input starts with y (as `yes | mkfs -t ferrofs`
gives); end of input refuses.";

/// Longest label: the superblock's 32-byte field keeps a terminating NUL.
pub const LABEL_MAX: usize = 31;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub label: Vec<u8>,
    pub force: bool,
    pub inodes: Option<u32>,
    pub quiet: bool,
    pub device: PathBuf,
    /// Blocks to use from the start of the device (all when `None`).
    pub blocks: Option<u64>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Format(Options),
    Help,
}

/// Parses the arguments after the program name, getopt style: short flags may
/// be grouped (`-fq`), an option's value may be attached (`-Lname`) or be the
/// next argument, and `--` ends the options.
pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Command, String> {
    let mut args = args.into_iter();
    let mut label = None;
    let mut force = false;
    let mut inodes = None;
    let mut quiet = false;
    let mut positional = Vec::new();
    let mut options_done = false;

    while let Some(arg) = args.next() {
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
        if bytes.starts_with(b"--") {
            return Err(format!("unknown option '{}'", arg.to_string_lossy()));
        }
        let mut i = 1;
        while i < bytes.len() {
            let flag = bytes[i];
            i += 1;
            match flag {
                b'f' => force = true,
                b'q' => quiet = true,
                b'h' => return Ok(Command::Help),
                b'L' | b'N' | b'b' => {
                    let value = if i < bytes.len() {
                        bytes[i..].to_vec()
                    } else {
                        match args.next() {
                            Some(v) => v.as_bytes().to_vec(),
                            None => return Err(format!("option -{} needs a value", flag as char)),
                        }
                    };
                    i = bytes.len();
                    if flag == b'L' {
                        label = Some(value);
                    } else if flag == b'b' {
                        parse_block_size(&value)?;
                    } else {
                        inodes = Some(parse_inodes(&value)?);
                    }
                }
                other => {
                    return Err(format!(
                        "unknown option '-{}'",
                        String::from_utf8_lossy(&[other])
                    ))
                }
            }
        }
    }

    let label = label.unwrap_or_default();
    if label.len() > LABEL_MAX {
        return Err(format!(
            "label is {} bytes long; at most {LABEL_MAX} fit",
            label.len()
        ));
    }
    if label.contains(&0) {
        return Err("label contains a NUL byte".into());
    }
    let mut positional = positional.into_iter();
    let device = match positional.next() {
        None => return Err("no device or image given".into()),
        Some(d) => PathBuf::from(d),
    };
    let blocks = match positional.next() {
        None => None,
        Some(b) => Some(parse_blocks(b.as_bytes())?),
    };
    let positional: Vec<OsString> = positional.collect();
    match positional.len() {
        0 => {}
        _ => {
            let extra: Vec<_> = positional
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            return Err(format!("unexpected argument(s): {}", extra.join(" ")));
        }
    }
    Ok(Command::Format(Options {
        label,
        force,
        inodes,
        quiet,
        device,
        blocks,
    }))
}

/// `-b`: fstests and mke2fs habits pass a block size; only 4096 is possible.
fn parse_block_size(value: &[u8]) -> Result<(), String> {
    match value {
        b"4096" | b"4k" | b"4K" => Ok(()),
        _ => Err(format!(
            "-b {}: ferrofs has 4096-byte blocks only",
            String::from_utf8_lossy(value)
        )),
    }
}

fn parse_blocks(value: &[u8]) -> Result<u64, String> {
    let text = String::from_utf8_lossy(value);
    match text.parse::<u64>() {
        Ok(0) | Err(_) => Err(format!(
            "'{text}' is not a block count (a number of 4096-byte blocks, at least 1)"
        )),
        Ok(n) => Ok(n),
    }
}

fn parse_inodes(value: &[u8]) -> Result<u32, String> {
    let text = String::from_utf8_lossy(value);
    match text.parse::<u32>() {
        Ok(0) => Err("-N: the inode count must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "-N: '{text}' is not an inode count (a number from 1 to {})",
            u32::MAX
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, String> {
        parse(args.iter().map(OsString::from))
    }

    fn opts(args: &[&str]) -> Options {
        match p(args) {
            Ok(Command::Format(o)) => o,
            other => panic!("{args:?}: expected options, got {other:?}"),
        }
    }

    #[test]
    fn device_alone_gives_defaults() {
        let o = opts(&["img"]);
        assert_eq!(
            o,
            Options {
                label: vec![],
                force: false,
                inodes: None,
                quiet: false,
                device: "img".into(),
                blocks: None,
            }
        );
    }

    #[test]
    fn all_options_separate_and_attached() {
        let want = Options {
            label: b"data".to_vec(),
            force: true,
            inodes: Some(100),
            quiet: true,
            device: "/dev/pmem0".into(),
            blocks: None,
        };
        assert_eq!(
            opts(&["-L", "data", "-f", "-N", "100", "-q", "/dev/pmem0"]),
            want
        );
        assert_eq!(opts(&["-Ldata", "-fqN100", "/dev/pmem0"]), want);
        assert_eq!(opts(&["/dev/pmem0", "-fq", "-N100", "-Ldata"]), want);
    }

    #[test]
    fn block_size_4096_and_a_block_count_are_accepted() {
        let o = opts(&["-b", "4096", "-b4k", "img", "300"]);
        assert_eq!((o.device, o.blocks), ("img".into(), Some(300)));
        assert!(p(&["-b", "1024", "img"])
            .unwrap_err()
            .contains("4096-byte blocks only"));
        assert!(p(&["img", "0"]).unwrap_err().contains("not a block count"));
        assert!(p(&["img", "12x"])
            .unwrap_err()
            .contains("not a block count"));
        assert!(p(&["img", "1", "2"])
            .unwrap_err()
            .contains("unexpected argument(s): 2"));
    }

    #[test]
    fn double_dash_ends_options() {
        assert_eq!(
            opts(&["--", "-weird-name"]).device,
            PathBuf::from("-weird-name")
        );
    }

    #[test]
    fn help_is_recognised() {
        assert_eq!(p(&["-h"]), Ok(Command::Help));
        assert_eq!(p(&["--help", "x"]), Ok(Command::Help));
    }

    #[test]
    fn unknown_flags_are_errors() {
        for args in [&["-x", "img"][..], &["--force", "img"], &["-fz", "img"]] {
            assert!(p(args).is_err(), "{args:?} accepted");
        }
    }

    #[test]
    fn missing_or_extra_device_is_an_error() {
        assert!(p(&[]).is_err());
        assert!(p(&["-f"]).is_err());
        assert!(p(&["a", "b"]).is_err());
    }

    #[test]
    fn option_without_value_is_an_error() {
        assert!(p(&["img", "-L"]).is_err());
        assert!(p(&["img", "-N"]).is_err());
    }

    #[test]
    fn label_of_31_bytes_is_accepted_and_32_refused() {
        let l31 = "a".repeat(31);
        let l32 = "a".repeat(32);
        assert_eq!(opts(&["-L", &l31, "img"]).label.len(), 31);
        assert!(p(&["-L", &l32, "img"]).is_err());
    }

    #[test]
    fn bad_inode_counts_are_errors() {
        for n in ["0", "-1", "abc", "4294967296", ""] {
            assert!(p(&["-N", n, "img"]).is_err(), "-N {n:?} accepted");
        }
        assert_eq!(opts(&["-N", "4294967295", "img"]).inodes, Some(u32::MAX));
    }
}
