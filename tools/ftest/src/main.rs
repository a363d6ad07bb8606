//! ferrotest: checks the DAX mmap/fsync semantics of a mounted ferrofs
//! through its per-mount counters. Runs inside the test guest; see
//! `ferrotest --help` and args.rs for the commands.
#![warn(clippy::undocumented_unsafe_blocks)]

mod args;
mod cases;
mod coherence;
mod counters;
mod crashrun;
mod gup;
mod mapsync;
mod mtstress;
mod pattern;
mod pmd;
mod runner;
mod stress;
mod sys;
mod tap;
mod tools;

use std::process::ExitCode;
use std::time::Duration;

use args::{Command, RunArgs};
use runner::{Case, RunOpts};

/// Time limit of one case (the stress case gets its run time on top).
const CASE_TIMEOUT: Duration = Duration::from_secs(120);

fn main() -> ExitCode {
    let cmd = match args::parse(std::env::args_os().skip(1)) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("ferrotest: {msg}\n{}", args::USAGE);
            return ExitCode::from(1);
        }
    };
    let done = |r: Result<(), String>| match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("ferrotest: {msg}");
            ExitCode::from(1)
        }
    };
    let said = |r: Result<String, String>| {
        done(r.map(|m| {
            println!("{m}");
        }))
    };
    match cmd {
        Command::Help => {
            println!("{}", args::USAGE);
            ExitCode::SUCCESS
        }
        Command::List => {
            for c in cases::CASES {
                println!("{}", c.name);
            }
            ExitCode::SUCCESS
        }
        Command::Run(r) => run(r),
        Command::Fill { file, seed, len } => done(tools::fill(&file, seed, len)),
        Command::Verify { file, seed, len } => done(tools::verify(&file, seed, len)),
        Command::MmapFill {
            file,
            seed,
            len,
            sync,
        } => done(tools::mmap_fill(&file, seed, len, sync)),
        Command::SbPatch {
            dev,
            field,
            value,
            fix_csum,
        } => said(tools::sbpatch(&dev, field, &value, fix_csum)),
        Command::FlipByte { dev, offset } => said(tools::flipbyte(&dev, offset)),
        Command::CutSymlinkBlock { dev, ino } => said(tools::cut_symlink_block(&dev, ino)),
        Command::CrashWorkload {
            seed,
            ops,
            dir,
            mark,
            threads,
        } => said(crashrun::run_threads(
            seed,
            ops,
            &dir,
            mark.as_deref(),
            threads,
        )),
    }
}

fn run(r: RunArgs) -> ExitCode {
    let mut selected: Vec<&Case> = Vec::new();
    for name in &r.names {
        match cases::CASES.iter().find(|c| c.name == name) {
            Some(c) => selected.push(c),
            None => {
                eprintln!("ferrotest: no case named {name:?} (see ferrotest list)");
                return ExitCode::from(1);
            }
        }
    }
    if r.names.is_empty() {
        selected = cases::CASES.iter().collect();
    }
    if !r.dir.is_dir() {
        eprintln!("ferrotest: {} is not a directory", r.dir.display());
        return ExitCode::from(1);
    }
    let stats = if r.no_counters {
        None
    } else {
        let Some(s) = r.stats.clone().or_else(|| runner::find_stats_dir(&r.dir)) else {
            eprintln!(
                "ferrotest: no ferrofs counters found for {} under /sys/fs/ferrofs; \
                 give --stats DIR, or --no-counters",
                r.dir.display()
            );
            return ExitCode::from(1);
        };
        // Fail early and once if the counters cannot be read at all.
        if let Err(e) = counters::Counters::read(&s) {
            eprintln!("ferrotest: {e}");
            return ExitCode::from(1);
        }
        Some(s)
    };
    println!(
        "# ferrotest: dir {}, counters {}",
        r.dir.display(),
        stats
            .as_ref()
            .map_or("off".to_string(), |s| s.display().to_string())
    );
    let opts = RunOpts {
        dir: r.dir,
        stats,
        timeout: CASE_TIMEOUT,
    };
    if runner::run_all(&selected, &opts) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
