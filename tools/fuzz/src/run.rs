//! `run` and `replay`: rounds of mutate, write to the device, mount and
//! exercise in a child with a time limit, then read the kernel log.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::exercise::{exercise, Events, Limits};
use crate::kmsg::{is_bad, Kmsg};
use crate::model::Model;
use crate::mutate::{generate, Kind, Mutation, Target};
use crate::rng::Rng;
use crate::sys::{self, errno_name, signal_name, AlignedBuf, Errno};

pub struct RunOpts {
    pub base: PathBuf,
    pub dev: PathBuf,
    pub mnt: PathBuf,
    pub seed: u64,
    /// Number of the first round.
    pub first: u64,
    pub rounds: u64,
    pub kinds: Vec<Kind>,
    /// Seconds a round may take.
    pub timeout: u32,
    pub log: Option<PathBuf>,
    pub verbose: bool,
    /// Only print the mutations (no device needed).
    pub dry_run: bool,
    pub device_blocks: Option<u64>,
    /// Write each mutated image to this directory (named by round).
    pub save_dir: Option<PathBuf>,
    /// The kind options as given (" --skip-kind inode-blocks"), for the
    /// replay commands printed.
    pub kind_args: String,
}

/// How a run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    /// Some round had a kernel problem or timed out; the run went on.
    Problems,
    /// A child could not be reaped: the run had to stop.
    Hung,
}

/// The result of one round.
#[derive(Default)]
struct Round {
    mount: Option<Result<(), Errno>>,
    umount: Option<Result<(), Errno>>,
    ok: u64,
    /// (operation, errno) -> count.
    fails: BTreeMap<(String, Errno), u64>,
    /// First failures, for verbose output: "read /mnt/fuzz/big: EIO".
    fail_lines: Vec<String>,
    signals: Vec<(i32, String)>,
    phase: String,
    status: String,
    timed_out: bool,
    hung: bool,
    left_mounted: bool,
}

impl Round {
    fn parse(&mut self, line: &str) {
        let mut w = line.splitn(4, ' ');
        let tag = w.next().unwrap_or("");
        let a = w.next().unwrap_or("");
        let b = w.next().unwrap_or("");
        let rest = w.next().unwrap_or("");
        let num = |s: &str| s.parse::<i64>().unwrap_or(-1);
        match tag {
            "m" | "u" => {
                let r = if num(a) == 0 {
                    Ok(())
                } else {
                    Err(num(a) as Errno)
                };
                if tag == "m" {
                    self.mount = Some(r);
                } else {
                    self.umount = Some(r);
                }
            }
            "p" => self.phase = line[2..].to_string(),
            "n" => self.ok += num(a).max(0) as u64,
            "e" => {
                let e = num(b) as Errno;
                *self.fails.entry((a.to_string(), e)).or_default() += 1;
                if self.fail_lines.len() < 40 {
                    self.fail_lines
                        .push(format!("{a} {rest}: {}", errno_name(e)));
                }
            }
            "s" => {
                let path = line.splitn(3, ' ').nth(2).unwrap_or("");
                self.signals.push((num(a) as i32, path.to_string()));
            }
            _ => {}
        }
    }

    fn failed_calls(&self) -> u64 {
        self.fails.values().sum()
    }

    fn errno_counts(&self) -> BTreeMap<Errno, u64> {
        let mut m = BTreeMap::new();
        for ((_, e), n) in &self.fails {
            *m.entry(*e).or_default() += n;
        }
        m
    }

    fn summary(&self) -> String {
        let mut s = match self.mount {
            None => "mount did not return".to_string(),
            Some(Err(e)) => format!("mount refused: {}", errno_name(e)),
            Some(Ok(())) => format!(
                "mounted; {} calls, {} failed{}",
                self.ok + self.failed_calls(),
                self.failed_calls(),
                counts(&self.errno_counts(), |e| errno_name(*e))
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default()
            ),
        };
        for (sig, p) in &self.signals {
            s.push_str(&format!("; {} mapping {p}", signal_name(*sig)));
        }
        if let Some(Err(e)) = self.umount {
            s.push_str(&format!("; umount: {}", errno_name(e)));
        }
        if !self.status.is_empty() {
            s.push_str(&format!("; child {}", self.status));
        }
        if self.left_mounted {
            s.push_str("; left mounted");
        }
        s
    }
}

/// "EIO x3, ENOENT x1", most frequent first; None if empty.
fn counts<K>(m: &BTreeMap<K, u64>, name: impl Fn(&K) -> String) -> Option<String> {
    if m.is_empty() {
        return None;
    }
    let mut v: Vec<(&K, &u64)> = m.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1));
    Some(
        v.iter()
            .map(|(k, n)| format!("{} x{n}", name(k)))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

/// Totals over the run.
#[derive(Default)]
struct Totals {
    rounds: u64,
    mounted: u64,
    refused: BTreeMap<Errno, u64>,
    errnos: BTreeMap<Errno, u64>,
    signals: BTreeMap<i32, u64>,
    /// Rounds whose kernel log had a problem, with the first bad line.
    kernel: Vec<(u64, String)>,
    timeouts: Vec<u64>,
    kinds: BTreeMap<&'static str, u64>,
}

struct Out {
    log: Option<File>,
}

impl Out {
    fn line(&mut self, s: &str) {
        println!("{s}");
        let _ = std::io::stdout().flush();
        if let Some(f) = self.log.as_mut() {
            let _ = writeln!(f, "{s}");
            let _ = f.sync_data();
        }
    }
}

fn read_base(p: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(p).map_err(|e| format!("cannot read the base {}: {e}", p.display()))
}

/// The mutation of round `round` (for `mutate` and the tests).
pub fn mutation_of(
    base: &[u8],
    model: &Model,
    seed: u64,
    round: u64,
    kinds: &[Kind],
    target: Target,
) -> Result<Mutation, String> {
    generate(model, base, &mut Rng::for_round(seed, round), kinds, target)
}

pub fn run(o: &RunOpts) -> Result<Verdict, String> {
    let base = read_base(&o.base)?;
    let model = Model::parse(&base).map_err(|e| format!("base {}: {e}", o.base.display()))?;
    let mut out = Out {
        log: match &o.log {
            Some(p) => Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| format!("cannot open {}: {e}", p.display()))?,
            ),
            None => None,
        },
    };
    let device_blocks = match o.device_blocks {
        Some(b) => b,
        None if o.dry_run => Target::default().device_blocks,
        None => {
            sys::device_bytes(&o.dev)
                .map_err(|e| format!("cannot open {}: {e}", o.dev.display()))?
                / 4096
        }
    };
    if !o.dry_run && device_blocks < model.image_blocks {
        return Err(format!(
            "{} ({device_blocks} blocks) is smaller than the base ({} blocks)",
            o.dev.display(),
            model.image_blocks
        ));
    }
    let target = Target { device_blocks };
    let mut kmsg = if o.dry_run {
        Kmsg::none()
    } else {
        Kmsg::open()
    };
    if !o.dry_run {
        if !kmsg.available() {
            out.line("ferrofuzz: cannot read /dev/kmsg: kernel problems will not be seen");
        }
        std::fs::create_dir_all(&o.mnt)
            .map_err(|e| format!("cannot create {}: {e}", o.mnt.display()))?;
        if sys::is_mounted(&o.mnt) {
            return Err(format!("{} is already a mount point", o.mnt.display()));
        }
        // Past the image, the device reads as zeros: a mutated size that
        // reaches there finds the same bytes in every run.
        let tail = (model.image_blocks * 4096) as usize;
        if device_blocks * 4096 >= 2 * tail as u64 {
            sys::write_device(&o.dev, &AlignedBuf::new(tail), tail as u64)
                .map_err(|e| format!("cannot write {}: {e}", o.dev.display()))?;
        }
    }
    out.line(&format!(
        "ferrofuzz: seed {} ({:#x}), rounds {}-{}, base {} ({} blocks, {} inodes used), device {} ({device_blocks} blocks), {} of {} kinds",
        o.seed,
        o.seed,
        o.first,
        (o.first + o.rounds).saturating_sub(1),
        o.base.display(),
        model.image_blocks,
        model.inodes.len(),
        o.dev.display(),
        o.kinds.len(),
        crate::mutate::KINDS.len()
    ));
    let mut t = Totals::default();
    let mut img = AlignedBuf::new(base.len());
    let started = Instant::now();
    let mut verdict = Verdict::Clean;
    for r in o.first..o.first + o.rounds {
        let m = mutation_of(&base, &model, o.seed, r, &o.kinds, target)?;
        let line = format!("round {r}: {}", m.describe());
        out.line(&line);
        t.rounds += 1;
        *t.kinds.entry(m.kind.name()).or_default() += 1;
        img.copy_from_slice(&base);
        m.apply(&mut img);
        if let Some(d) = &o.save_dir {
            let p = d.join(format!("round-{r}.img"));
            std::fs::write(&p, &*img).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
        }
        if o.dry_run {
            continue;
        }
        kmsg.mark(&format!("seed {} {line}", o.seed));
        sys::write_device(&o.dev, &img, 0)
            .map_err(|e| format!("round {r}: cannot write {}: {e}", o.dev.display()))?;
        let t0 = Instant::now();
        let res = round_in_child(Some(&o.dev), &o.mnt, o.timeout);
        let took = t0.elapsed().as_secs_f64();
        let klines = kmsg.read_new();
        let bad: Vec<&String> = klines
            .iter()
            .filter(|l| !l.starts_with("ferrofuzz:") && is_bad(l))
            .collect();
        out.line(&format!("round {r}: {} ({took:.1} s)", res.summary()));
        if o.verbose {
            for l in &res.fail_lines {
                out.line(&format!("  call {l}"));
            }
            for l in klines.iter().filter(|l| !l.starts_with("ferrofuzz:")) {
                out.line(&format!("  kernel: {l}"));
            }
        }
        match res.mount {
            Some(Ok(())) => t.mounted += 1,
            Some(Err(e)) => *t.refused.entry(e).or_default() += 1,
            None => {}
        }
        for (e, n) in res.errno_counts() {
            *t.errnos.entry(e).or_default() += n;
        }
        for (s, _) in &res.signals {
            *t.signals.entry(*s).or_default() += 1;
        }
        if !bad.is_empty() {
            out.line(&format!(
                "round {r}: KERNEL PROBLEM after {} (replay: ferrofuzz replay --base {} --seed {} --round {r}{})",
                m.describe(),
                o.base.display(),
                o.seed,
                o.kind_args
            ));
            for l in klines
                .iter()
                .filter(|l| !l.starts_with("ferrofuzz:"))
                .take(80)
            {
                out.line(&format!("  kernel: {l}"));
            }
            t.kernel.push((r, bad[0].clone()));
            verdict = Verdict::Problems;
        }
        if res.timed_out || res.hung {
            out.line(&format!(
                "round {r}: HANG: the round took longer than {} s (last: {}); {}",
                o.timeout,
                res.phase,
                m.describe()
            ));
            t.timeouts.push(r);
            if verdict == Verdict::Clean {
                verdict = Verdict::Problems;
            }
        }
        if res.hung {
            // Dump the blocked tasks to the kernel log and show them.
            let _ = std::fs::write("/proc/sysrq-trigger", "w");
            std::thread::sleep(Duration::from_millis(500));
            for l in kmsg.read_new().iter().take(120) {
                out.line(&format!("  kernel: {l}"));
            }
            verdict = Verdict::Hung;
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let kinds_line = counts(&t.kinds, |k| k.to_string()).unwrap_or_default();
    if o.verbose || o.dry_run {
        out.line(&format!("ferrofuzz: kinds: {kinds_line}"));
    }
    let summary = if o.dry_run {
        format!(
            "ferrofuzz: {} mutations listed, seed {} (dry run)",
            t.rounds, o.seed
        )
    } else {
        format!(
            "ferrofuzz: {} rounds, seed {}, {} mounted, {} refused{}; errnos: {}; signals: {}; kernel problems: {}{}; hangs: {}{}; {:.0} s",
            t.rounds,
            o.seed,
            t.mounted,
            t.refused.values().sum::<u64>(),
            counts(&t.refused, |e| errno_name(*e))
                .map(|c| format!(" ({c})"))
                .unwrap_or_default(),
            counts(&t.errnos, |e| errno_name(*e)).unwrap_or_else(|| "none".into()),
            counts(&t.signals, |s| signal_name(*s)).unwrap_or_else(|| "none".into()),
            t.kernel.len(),
            if t.kernel.is_empty() {
                String::new()
            } else {
                format!(
                    " (rounds {})",
                    t.kernel
                        .iter()
                        .map(|(r, _)| r.to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            },
            t.timeouts.len(),
            if t.timeouts.is_empty() {
                String::new()
            } else {
                format!(
                    " (rounds {})",
                    t.timeouts
                        .iter()
                        .map(|r| r.to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            },
            secs
        )
    };
    out.line(&summary);
    for (r, l) in &t.kernel {
        out.line(&format!("ferrofuzz: round {r}: {l}"));
    }
    Ok(verdict)
}

/// Mount, exercise and unmount in a child (its own process group, with an
/// alarm); collect its events; clean up after it.
fn round_in_child(dev: Option<&Path>, mnt: &Path, timeout: u32) -> Round {
    let mut res = Round::default();
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills the two fds.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        res.status = format!("pipe: {}", errno_name(sys::errno()));
        return res;
    }
    let (rd, wr) = (fds[0], fds[1]);
    // SAFETY: this program is single-threaded; the child runs only the
    // round and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        res.status = format!("fork: {}", errno_name(sys::errno()));
        return res;
    }
    if pid == 0 {
        // SAFETY: fds and process-group calls on our own process.
        unsafe {
            libc::close(rd);
            libc::setpgid(0, 0);
            libc::alarm(timeout);
        }
        child(dev, mnt, wr);
        // SAFETY: leave without the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: our end of the pipe; nonblocking reads while we poll.
    unsafe {
        libc::close(wr);
        libc::fcntl(rd, libc::F_SETFL, libc::O_NONBLOCK);
    }
    let start = Instant::now();
    let mut pending = Vec::new();
    let mut killed = false;
    let mut status = 0;
    loop {
        drain(rd, &mut pending, &mut res);
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        let t = start.elapsed();
        if !killed && t > Duration::from_secs(timeout as u64 + 5) {
            // SAFETY: the child's process group (it and its grandchildren).
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            killed = true;
            res.timed_out = true;
        }
        if t > Duration::from_secs(timeout as u64 + 30) {
            res.hung = true;
            res.status = "cannot be reaped (stuck in the kernel)".into();
            // SAFETY: fd we own.
            unsafe { libc::close(rd) };
            return res;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    drain(rd, &mut pending, &mut res);
    // SAFETY: fd we own.
    unsafe { libc::close(rd) };
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        res.status = format!("killed by {}", signal_name(sig));
        if sig == libc::SIGALRM || sig == libc::SIGKILL {
            res.timed_out = true;
        }
    } else if libc::WEXITSTATUS(status) != 0 {
        res.status = format!("exited {}", libc::WEXITSTATUS(status));
    }
    // Grandchildren of a killed child may still be running: kill the group.
    // SAFETY: signalling the child's process group (ESRCH if it is gone).
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    if dev.is_some() && sys::is_mounted(mnt) {
        res.left_mounted = true;
        let mut ok = false;
        for _ in 0..20 {
            if sys::umount(mnt, 0).is_ok() {
                ok = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !ok {
            let _ = sys::umount(mnt, libc::MNT_DETACH);
        }
    }
    res
}

fn drain(rd: i32, pending: &mut Vec<u8>, res: &mut Round) {
    let mut buf = [0u8; 8192];
    loop {
        // SAFETY: reading into our buffer from our fd.
        let n = unsafe { libc::read(rd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n as usize]);
    }
    while let Some(i) = pending.iter().position(|&c| c == b'\n') {
        let line: Vec<u8> = pending.drain(..=i).collect();
        res.parse(String::from_utf8_lossy(&line[..i]).as_ref());
    }
}

/// The child: mount, exercise, unmount; every result to `wr`. Without a
/// device, only the exercise, on whatever `mnt` is.
fn child(dev: Option<&Path>, mnt: &Path, wr: i32) {
    let mut ev = Events::new(wr);
    let send = |ev: &mut Events, tag: &str, r: Result<(), Errno>| {
        ev.flush();
        ev.raw(&format!("{tag} {}", r.err().unwrap_or(0)));
    };
    let Some(dev) = dev else {
        send(&mut ev, "m", Ok(()));
        exercise(mnt, &mut ev, &Limits::default());
        return;
    };
    ev.phase("mount", &dev.display().to_string());
    let m = sys::mount(dev, mnt, "ferrofs", "dax");
    send(&mut ev, "m", m);
    if m.is_err() {
        return;
    }
    exercise(mnt, &mut ev, &Limits::default());
    ev.phase("umount", "");
    let mut u = sys::umount(mnt, 0);
    for _ in 0..10 {
        if u != Err(libc::EBUSY) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        u = sys::umount(mnt, 0);
    }
    send(&mut ev, "u", u);
}

/// `exercise --dir DIR`: one round's workload on a directory that is
/// already there (any filesystem), verbosely. For checking the workload
/// itself, or comparing with another filesystem.
pub fn exercise_dir(dir: &Path, timeout: u32) -> String {
    let res = round_in_child(None, dir, timeout);
    let mut s = res.summary();
    for l in &res.fail_lines {
        s.push_str(&format!("\n  call {l}"));
    }
    if res.timed_out {
        s.push_str(&format!("\n  timed out in: {}", res.phase));
    }
    s
}
