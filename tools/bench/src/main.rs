//! ferrobench: fsync, msync, page-fault, write and metadata benchmarks for
//! DAX filesystems. `make bench` runs it in the test guest on ferrofs, ext4
//! and xfs in turn (scripts/bench.sh); see `ferrobench help` and args.rs.
#![warn(clippy::undocumented_unsafe_blocks)]

mod args;
mod cases;
mod flush;
mod json;
mod stats;
mod sys;

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use args::{Command, RunArgs, ScalingArgs};
use cases::{Bench, Unit};
use json::Value;
use stats::Summary;

fn main() -> ExitCode {
    let cmd = match args::parse(std::env::args_os().skip(1)) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("ferrobench: {msg}\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let r = match cmd {
        Command::Help => {
            println!("{}", args::USAGE);
            Ok(())
        }
        Command::Run(r) => run(r),
        Command::FsyncScaling(s) => fsync_scaling(s),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("ferrobench: {msg}");
            ExitCode::from(1)
        }
    }
}

/// Whether files in `dir` report STATX_ATTR_DAX (None: statx does not say).
fn dax_attr(dir: &std::path::Path) -> Result<Option<bool>, String> {
    let p = dir.join(".ferrobench-probe");
    let fd = sys::Fd::create(&p)?;
    let a = fd.dax_attr();
    drop(fd);
    sys::unlink(&p)?;
    Ok(a)
}

fn fmt_value(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Micros if v < 10.0 => format!("{v:.2}"),
        Unit::Micros => format!("{v:.1}"),
        Unit::Rate(_) => format!("{v:.0}"),
    }
}

fn print_summary(b: &Bench) {
    println!(
        "{:<70} {:>12} {:>12} {:>12}  unit",
        format!("{} (median, p10, p90)", b.fs),
        "median",
        "p10",
        "p90"
    );
    for s in &b.series {
        if let Some(m) = Summary::of(&s.samples) {
            println!(
                "{:<70} {:>12} {:>12} {:>12}  {}",
                format!("{}. {}", s.case, s.title),
                fmt_value(m.median, s.unit),
                fmt_value(m.p10, s.unit),
                fmt_value(m.p90, s.unit),
                match s.unit {
                    Unit::Micros => "us",
                    Unit::Rate(u) => u,
                }
            );
        }
    }
}

fn run(a: RunArgs) -> Result<(), String> {
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let dax = dax_attr(&a.dir)?;
    let mut b = Bench::new(&a.dir, &a.fs, a.quick, 768);
    let hv = sys::hypervisor_vendor();
    b.say(&format!(
        "in {}; {} mode; flush insn {}; hypervisor {}; STATX_ATTR_DAX {}",
        a.dir.display(),
        if a.quick { "quick" } else { "full" },
        b.insn.name(),
        hv.as_deref().unwrap_or("none"),
        match dax {
            Some(true) => "set",
            Some(false) => "clear",
            None => "not reported",
        }
    ));
    let result = b.run(&a.cases);
    let plan = b.plan;
    let doc = Value::obj(vec![
        ("tool", Value::str("ferrobench")),
        ("version", Value::str(env!("CARGO_PKG_VERSION"))),
        ("fs", Value::str(&a.fs)),
        ("dir", Value::str(a.dir.display().to_string())),
        ("quick", Value::Bool(a.quick)),
        ("kernel", Value::str(sys::kernel_release())),
        ("hypervisor", hv.map_or(Value::Null, Value::Str)),
        ("flush_insn", Value::str(b.insn.name())),
        ("statx_dax", dax.map_or(Value::Null, Value::Bool)),
        ("started_unix", Value::Int(started as i64)),
        ("seconds", Value::Num(b.elapsed())),
        (
            "plan",
            Value::obj(vec![
                ("latency_samples", Value::Int(plan.latency as i64)),
                ("clean_samples", Value::Int(plan.clean as i64)),
                ("big_fault_sweeps", Value::Int(plan.big_sweeps as i64)),
                ("fault_sweeps", Value::Int(plan.sweeps as i64)),
                ("batches", Value::Int(plan.batches as i64)),
                ("batch", Value::Int(plan.batch as i64)),
                ("warmup", Value::Int(plan.warmup as i64)),
            ]),
        ),
        (
            "error",
            result.as_ref().err().map_or(Value::Null, Value::str),
        ),
        (
            "series",
            Value::Arr(b.series.iter().map(|s| s.to_json()).collect()),
        ),
    ]);
    if let Some(path) = &a.json {
        std::fs::write(path, doc.to_pretty())
            .map_err(|e| format!("write {}: {e}", path.display()))?;
        b.say(&format!("wrote {}", path.display()));
    }
    print_summary(&b);
    b.say(&format!("done in {:.0} s", b.elapsed()));
    result
}

fn fsync_scaling(a: ScalingArgs) -> Result<(), String> {
    let mut b = Bench::new(&a.dir, "fsync-scaling", true, a.max_mib);
    let ratio = b.fsync_file_size(a.samples, a.page)?;
    println!(
        "fsync of 1 dirty page ({} page, stored to through a MAP_SHARED mapping of a pre-faulted file)",
        a.page.name()
    );
    println!(
        "{:<14} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "file size", "median us", "p10", "p90", "min", "max"
    );
    for s in &b.series {
        if let (Some(m), Some(x)) = (Summary::of(&s.samples), s.x) {
            let size = if x >= 1 << 20 {
                format!("{} MiB", x >> 20)
            } else {
                format!("{} KiB", x >> 10)
            };
            println!(
                "{size:<14} {:>12.1} {:>12.1} {:>12.1} {:>12.1} {:>12.1}",
                m.median, m.p10, m.p90, m.min, m.max
            );
        }
    }
    match ratio {
        Some(r) => {
            let (big, _) = b
                .series
                .last()
                .and_then(|s| s.x)
                .map(|x| (x >> 20, 0))
                .unwrap_or((0, 0));
            println!("ratio {big} MiB / 4 KiB (medians): {r:.2}");
        }
        None => println!("ratio: not available"),
    }
    Ok(())
}
