//! ferrocrash: check every crash state a ferrofs persistence trace allows.
//! See the library documentation and docs/crash-consistency.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use ferrofs_crashcheck::check::{self, Opts};
use ferrofs_crashcheck::trace;

const USAGE: &str = "\
usage: ferrocrash --image PRE.img --trace TRACE.bin --seed S --ops N
                  [--threads T] [--states-per-point K] [--max-points M]
                  [--rng-seed R] [--save-dir DIR]

PRE.img is the filesystem image from before the workload, TRACE.bin what
/sys/fs/ferrofs/<dev>/trace held after `ferrotest crash-workload --seed S
--ops N [--threads T] --mark .../trace_mark` ran on it. Checks, at M crash points at most
(default 3000; fences and markers, a random subset if there are more), the
state with nothing pending persisted, with everything, and K random ones
(default 3). Exit 0 if every state is consistent, 1 if one is not, 2 if the
trace or the arguments cannot be used.";

fn main() -> ExitCode {
    match real_main() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(msg) => {
            eprintln!("ferrocrash: {msg}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> Result<bool, String> {
    let mut image = None;
    let mut trace_path = None;
    let mut seed = None;
    let mut nops = None;
    let mut threads = 1usize;
    let mut o = Opts {
        states_per_point: 3,
        rng_seed: 1,
        max_points: 3000,
        save_dir: None,
        scratch: std::env::temp_dir().join(format!("ferrocrash-{}.img", std::process::id())),
    };
    if std::path::Path::new("/dev/shm").is_dir() {
        o.scratch = PathBuf::from(format!("/dev/shm/ferrocrash-{}.img", std::process::id()));
    }
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or(format!("{name} needs a value\n{USAGE}"));
        let num = |s: String| s.parse::<u64>().map_err(|_| format!("not a number: {s:?}"));
        match a.as_str() {
            "--image" => image = Some(PathBuf::from(val("--image")?)),
            "--trace" => trace_path = Some(PathBuf::from(val("--trace")?)),
            "--seed" => seed = Some(num(val("--seed")?)?),
            "--ops" => nops = Some(num(val("--ops")?)? as usize),
            "--threads" => threads = num(val(&a)?)?.clamp(1, 4) as usize,
            "--states-per-point" => o.states_per_point = num(val(&a)?)? as usize,
            "--max-points" => o.max_points = num(val(&a)?)? as usize,
            "--rng-seed" => o.rng_seed = num(val(&a)?)?,
            "--save-dir" => o.save_dir = Some(PathBuf::from(val(&a)?)),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(true);
            }
            _ => return Err(format!("unknown argument {a:?}\n{USAGE}")),
        }
    }
    let (Some(image), Some(trace_path), Some(seed), Some(nops)) = (image, trace_path, seed, nops)
    else {
        return Err(format!(
            "--image, --trace, --seed and --ops are required\n{USAGE}"
        ));
    };
    let pre = std::fs::read(&image).map_err(|e| format!("{}: {e}", image.display()))?;
    let raw = std::fs::read(&trace_path).map_err(|e| format!("{}: {e}", trace_path.display()))?;
    let events = trace::parse(&raw)?;
    let workloads: Vec<_> = (0..threads)
        .map(|t| ferrofs_crashwl::thread_ops(seed, nops, t, threads))
        .collect();
    let want: usize = workloads.iter().map(|w| 2 * w.len()).sum();
    let marks = events
        .iter()
        .filter(|e| matches!(e, trace::Event::Mark(_)))
        .count();
    if marks != want {
        return Err(format!(
            "the trace has {marks} markers, expected {want} for {threads} thread(s) of {nops} operations"
        ));
    }
    let t0 = Instant::now();
    let r = check::run_threads(pre, &events, &workloads, &o);
    let _ = std::fs::remove_file(&o.scratch);
    let r = r?;
    for d in &r.details {
        println!("inconsistent: {d}");
    }
    println!(
        "ferrocrash: {} events, {} crash points checked of {}, {} states checked, {} inconsistent ({:.1} s)",
        events.len(),
        r.points,
        r.candidate_points,
        r.states,
        r.inconsistent,
        t0.elapsed().as_secs_f64()
    );
    if r.outside > 0 {
        println!(
            "ferrocrash: {} stores past the end of the image were ignored",
            r.outside
        );
    }
    Ok(r.inconsistent == 0)
}
