//! mkfs.ferrofs: create a ferrofs filesystem on a PMEM block device or an
//! image file.
//!
//! Exit status: 0 on success, 1 on any error (nothing is written unless every
//! check passed).

mod args;
mod mkfs;

use std::process::ExitCode;

use args::Command;

fn main() -> ExitCode {
    let opts = match args::parse(std::env::args_os().skip(1)) {
        Ok(Command::Format(opts)) => opts,
        Ok(Command::Help) => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("mkfs.ferrofs: {msg}\n{}", args::USAGE);
            return ExitCode::from(1);
        }
    };
    match mkfs::run(&opts) {
        Ok(s) => {
            if !opts.quiet {
                let g = &s.geometry;
                println!("ferrofs created on {}", opts.device.display());
                println!(
                    "  blocks:      {} of {} bytes ({} MiB)",
                    g.blocks_count,
                    ferrofs_format::BLOCK_SIZE,
                    (g.blocks_count * ferrofs_format::BLOCK_SIZE as u64) >> 20
                );
                println!("  inodes:      {}", g.inodes_count);
                println!(
                    "  data blocks: {} free of {} (data starts at block {})",
                    s.free_data_blocks,
                    g.blocks_count - g.data_start,
                    g.data_start
                );
                println!("  label:       \"{}\"", String::from_utf8_lossy(&s.label));
                println!("  UUID:        {}", mkfs::format_uuid(&s.uuid));
            }
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("mkfs.ferrofs: {msg}");
            ExitCode::from(1)
        }
    }
}
