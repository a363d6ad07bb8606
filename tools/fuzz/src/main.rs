//! ferrofuzz: a structure-aware fuzzer of ferrofs images. See `ferrofuzz
//! help` and the crate documentation (src/lib.rs).

use std::path::PathBuf;
use std::process::ExitCode;

use ferrofs_fuzz::base::{make_base, BaseOpts};
use ferrofs_fuzz::model::Model;
use ferrofs_fuzz::mutate::{Kind, Target, KINDS};
use ferrofs_fuzz::run::{mutation_of, run, RunOpts, Verdict};

const USAGE: &str = "\
usage: ferrofuzz COMMAND [OPTIONS]

  make-base --out IMG [--dev DEV] [--mnt DIR] [--mkfs PATH] [--size-mib N] [--synthetic]
      mkfs an N MiB image (default 16), write it to DEV (default /dev/pmem1),
      mount it, populate it through the module, unmount and save the first
      N MiB as IMG. --synthetic lays the same tree out on the host instead.
  run --base IMG --seed S [--rounds N] [--first R] [--dev DEV] [--mnt DIR]
      [--timeout SECS] [--skip-kind K]... [--kinds K,K...] [--log FILE]
      [--verbose] [--dry-run] [--device-blocks N] [--save-dir DIR]
      rounds R..R+N (default 1..101): mutate one field of IMG, write it to
      DEV, mount it (ferrofs, dax) in a child with a time limit (default 60
      s), exercise it, unmount, check the kernel log. --dry-run only lists
      the mutations (no device, no root).
  replay --base IMG --seed S --round R [run options]
      round R of the run seeded S, verbosely (pass the same --skip-kind and
      --kinds options as the run).
  mutate --base IMG --seed S --round R --out FILE [--skip-kind K]... [--kinds K,...]
      write the mutated image of that round to FILE.
  exercise --dir DIR [--populate]
      one round's workload on DIR (any filesystem; it changes it), after
      creating the base's tree in it with --populate.
  show --base IMG
      the base as the mutator sees it: geometry and every used inode.
  kinds
      list the mutation kinds.

Exit status: 0 clean; 1 a kernel problem (warning, oops, lockdep report...)
or a round over its time limit; 2 usage or setup error; 3 a round hung in
the kernel (the run stopped).";

struct Args {
    it: std::vec::IntoIter<String>,
}

impl Args {
    fn value(&mut self, flag: &str) -> Result<String, String> {
        self.it
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))
    }
}

fn number(flag: &str, s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("{flag}: not a number: {s:?}"))
}

fn kinds_of(list: &str) -> Result<Vec<Kind>, String> {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            Kind::parse(s)
                .ok_or_else(|| format!("unknown mutation kind {s:?} (see ferrofuzz kinds)"))
        })
        .collect()
}

/// Options shared by run, replay and mutate.
struct Common {
    base: Option<PathBuf>,
    seed: Option<u64>,
    round: Option<u64>,
    out: Option<PathBuf>,
    run: RunOpts,
    skip: Vec<Kind>,
    only: Option<Vec<Kind>>,
}

fn parse_common(a: &mut Args) -> Result<Common, String> {
    let mut c = Common {
        base: None,
        seed: None,
        round: None,
        out: None,
        run: RunOpts {
            base: PathBuf::new(),
            dev: PathBuf::from("/dev/pmem1"),
            mnt: PathBuf::from("/mnt/fuzz"),
            seed: 0,
            first: 1,
            rounds: 100,
            kinds: Vec::new(),
            timeout: 60,
            log: None,
            verbose: false,
            dry_run: false,
            device_blocks: None,
            save_dir: None,
            kind_args: String::new(),
        },
        skip: Vec::new(),
        only: None,
    };
    while let Some(f) = a.it.next() {
        match f.as_str() {
            "--base" => c.base = Some(a.value(&f)?.into()),
            "--seed" => c.seed = Some(number(&f, &a.value(&f)?)?),
            "--round" => c.round = Some(number(&f, &a.value(&f)?)?),
            "--rounds" => c.run.rounds = number(&f, &a.value(&f)?)?,
            "--first" => c.run.first = number(&f, &a.value(&f)?)?,
            "--out" => c.out = Some(a.value(&f)?.into()),
            "--dev" => c.run.dev = a.value(&f)?.into(),
            "--mnt" => c.run.mnt = a.value(&f)?.into(),
            "--timeout" => {
                c.run.timeout = number(&f, &a.value(&f)?)?.clamp(1, 3600) as u32;
            }
            "--log" => c.run.log = Some(a.value(&f)?.into()),
            "--save-dir" => c.run.save_dir = Some(a.value(&f)?.into()),
            "--device-blocks" => c.run.device_blocks = Some(number(&f, &a.value(&f)?)?),
            "--verbose" | "-v" => c.run.verbose = true,
            "--dry-run" => c.run.dry_run = true,
            "--skip-kind" => {
                let v = a.value(&f)?;
                c.skip.extend(kinds_of(&v)?);
                c.run.kind_args.push_str(&format!(" --skip-kind {v}"));
            }
            "--kinds" => {
                let v = a.value(&f)?;
                c.only = Some(kinds_of(&v)?);
                c.run.kind_args.push_str(&format!(" --kinds {v}"));
            }
            _ => return Err(format!("unknown option {f:?}")),
        }
    }
    let only = c.only.clone().unwrap_or_else(|| KINDS.to_vec());
    c.run.kinds = only.into_iter().filter(|k| !c.skip.contains(k)).collect();
    if c.run.kinds.is_empty() {
        return Err("every mutation kind is skipped".into());
    }
    c.run.base = c.base.clone().ok_or("--base is required")?;
    c.run.seed = c.seed.ok_or("--seed is required")?;
    Ok(c)
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("ferrofuzz: {msg}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> Result<ExitCode, String> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        return Err(format!("no command\n{USAGE}"));
    }
    let cmd = args.remove(0);
    let mut a = Args {
        it: args.into_iter(),
    };
    match cmd.as_str() {
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        "kinds" => {
            for k in KINDS {
                println!("{}", k.name());
            }
            Ok(ExitCode::SUCCESS)
        }
        "make-base" => {
            let mut o = BaseOpts {
                out: PathBuf::new(),
                dev: PathBuf::from("/dev/pmem1"),
                mnt: PathBuf::from("/mnt/fuzz"),
                mkfs: None,
                size: 16 << 20,
                synthetic: false,
            };
            let mut out = None;
            while let Some(f) = a.it.next() {
                match f.as_str() {
                    "--out" => out = Some(PathBuf::from(a.value(&f)?)),
                    "--dev" => o.dev = a.value(&f)?.into(),
                    "--mnt" => o.mnt = a.value(&f)?.into(),
                    "--mkfs" => o.mkfs = Some(a.value(&f)?.into()),
                    "--size-mib" => {
                        let n = number(&f, &a.value(&f)?)?;
                        if !(1..=1024).contains(&n) {
                            return Err("--size-mib: from 1 to 1024".into());
                        }
                        o.size = (n as usize) << 20;
                    }
                    "--synthetic" => o.synthetic = true,
                    _ => return Err(format!("unknown option {f:?}")),
                }
            }
            o.out = out.ok_or("--out is required")?;
            println!("ferrofuzz: {}", make_base(&o)?);
            Ok(ExitCode::SUCCESS)
        }
        "run" | "replay" => {
            let mut c = parse_common(&mut a)?;
            if cmd == "replay" {
                c.run.first = c.round.ok_or("--round is required")?;
                c.run.rounds = 1;
                c.run.verbose = true;
            }
            Ok(match run(&c.run)? {
                Verdict::Clean => ExitCode::SUCCESS,
                Verdict::Problems => ExitCode::from(1),
                Verdict::Hung => ExitCode::from(3),
            })
        }
        "show" => {
            let mut base = None;
            while let Some(f) = a.it.next() {
                match f.as_str() {
                    "--base" => base = Some(PathBuf::from(a.value(&f)?)),
                    _ => return Err(format!("unknown option {f:?}")),
                }
            }
            let base = base.ok_or("--base is required")?;
            let img =
                std::fs::read(&base).map_err(|e| format!("cannot read {}: {e}", base.display()))?;
            let m = Model::parse(&img)?;
            let g = m.geo;
            println!(
                "{} blocks, {} inodes; journal {}+{}, bitmap {}+{}, inode table {}+{}, data from {}; journal seq_done {}",
                g.blocks_count, g.inodes_count, g.journal_start, g.journal_blocks, g.bitmap_start,
                g.bitmap_blocks, g.itable_start, g.itable_blocks, g.data_start, m.journal.seq_done
            );
            for i in &m.inodes {
                println!(
                    "inode {:4} {:?} mode {:#o} nlink {} size {} blocks {} ({} data, {} indirect) {}",
                    i.ino,
                    i.kind,
                    i.inode.mode.get(),
                    i.inode.nlink.get(),
                    i.inode.size.get(),
                    i.inode.blocks.get(),
                    i.data_blocks.len(),
                    i.ind_blocks.len(),
                    i.path
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        "exercise" => {
            let mut dir = None;
            let mut populate = false;
            while let Some(f) = a.it.next() {
                match f.as_str() {
                    "--dir" => dir = Some(PathBuf::from(a.value(&f)?)),
                    "--populate" => populate = true,
                    _ => return Err(format!("unknown option {f:?}")),
                }
            }
            let dir = dir.ok_or("--dir is required")?;
            if populate {
                ferrofs_fuzz::base::populate(&dir)?;
            }
            println!("{}", ferrofs_fuzz::run::exercise_dir(&dir, 120));
            Ok(ExitCode::SUCCESS)
        }
        "mutate" => {
            let c = parse_common(&mut a)?;
            let round = c.round.ok_or("--round is required")?;
            let out = c.out.clone().ok_or("--out is required")?;
            let base = std::fs::read(&c.run.base)
                .map_err(|e| format!("cannot read {}: {e}", c.run.base.display()))?;
            let model = Model::parse(&base)?;
            let target = Target {
                device_blocks: c
                    .run
                    .device_blocks
                    .unwrap_or(Target::default().device_blocks),
            };
            let m = mutation_of(&base, &model, c.run.seed, round, &c.run.kinds, target)?;
            let mut img = base;
            m.apply(&mut img);
            std::fs::write(&out, &img)
                .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
            println!("round {round}: {}", m.describe());
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(format!("unknown command {cmd:?}\n{USAGE}")),
    }
}
