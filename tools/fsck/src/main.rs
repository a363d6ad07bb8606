//! fsck.ferrofs: check a ferrofs filesystem on a PMEM block device or an
//! image file, and with `-y` repair what can be repaired safely.
//!
//! Each problem is one line on standard output, starting with the inode or
//! block concerned; a summary line ends the report. Exit status as fsck(8),
//! the sum of: 1 errors corrected, 4 errors left uncorrected; or 8 for an
//! operational error (cannot open or read, not a ferrofs, bad superblock) and
//! 16 for a usage error.

mod args;

use ferrofs_fsck::check;

use std::process::ExitCode;

use args::Command;

const EXIT_CORRECTED: u8 = 1;
const EXIT_UNCORRECTED: u8 = 4;
const EXIT_OPERATIONAL: u8 = 8;
const EXIT_USAGE: u8 = 16;

fn main() -> ExitCode {
    let opts = match args::parse(std::env::args_os().skip(1)) {
        Ok(Command::Check(opts)) => opts,
        Ok(Command::Help) => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("fsck.ferrofs: {msg}\n{}", args::USAGE);
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let name = opts.device.display();
    let file = match ferrofs_image::open_device(&opts.device, opts.repair) {
        Ok(f) => f,
        Err(msg) => {
            eprintln!("fsck-ferrofs: {msg}");
            return ExitCode::from(EXIT_OPERATIONAL);
        }
    };
    let out = match check::check(&file, opts.repair, opts.verbose) {
        Ok(out) => out,
        Err(check::Fatal(msg)) => {
            eprintln!("fsck-ferrofs: {name}: {msg}");
            return ExitCode::from(EXIT_OPERATIONAL);
        }
    };
    for n in &out.notes {
        println!("fsck-ferrofs: {n}");
    }
    let mut fixed = 0;
    let mut fixable = 0;
    for p in &out.problems {
        let note = if p.fixes.is_empty() {
            ""
        } else if out.repaired {
            fixed += 1;
            " [fixed]"
        } else {
            fixable += 1;
            " [fixable with -y]"
        };
        println!("{}{note}", p.text);
    }
    let n = out.problems.len();
    let hint = if fixable > 0 {
        format!(" ({fixable} fixable with -y)")
    } else {
        String::new()
    };
    println!(
        "fsck-ferrofs: {name}: {} inode{}, {} block{} used, {n} problem{}, {fixed} fixed{hint}",
        out.used_inodes,
        plural(out.used_inodes),
        out.used_blocks,
        plural(out.used_blocks),
        plural(n as u64),
    );
    let mut code = 0;
    if fixed > 0 {
        code |= EXIT_CORRECTED;
    }
    if fixed < n {
        code |= EXIT_UNCORRECTED;
    }
    ExitCode::from(code)
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
