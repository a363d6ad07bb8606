//! Runs each case in a forked child with a time limit and prints TAP.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::counters::{self, Counters, Field};
use crate::sys::{self, ChildEnd};
use crate::tap::{self, ChildLine, Outcome};

/// Why a case stopped early.
#[derive(Debug)]
pub enum CaseError {
    Fail(String),
    Skip(String),
}

impl From<String> for CaseError {
    fn from(s: String) -> CaseError {
        CaseError::Fail(s)
    }
}

pub type CaseResult = Result<(), CaseError>;

pub struct Case {
    pub name: &'static str,
    /// Skipped with --no-counters. Other cases still run and check their
    /// data, leaving out their counter checks.
    pub needs_counters: bool,
    pub run: fn(&mut Ctx) -> CaseResult,
}

/// What a case sees: where to work, the counters, and its checks.
pub struct Ctx {
    pub name: &'static str,
    pub dir: PathBuf,
    stats: Option<PathBuf>,
    out: libc::c_int,
    failed: bool,
}

/// The suffixes of the files a case may create (see [`Ctx::file`]); the
/// runner removes them after the case, whatever became of it.
pub const FILE_SUFFIXES: [&str; 2] = ["", ".b"];

pub fn case_file(dir: &Path, case: &str, suffix: &str) -> PathBuf {
    dir.join(format!("ferrotest-{case}{suffix}"))
}

impl Ctx {
    /// The case's file with `suffix`, one of [`FILE_SUFFIXES`].
    pub fn file(&self, suffix: &str) -> PathBuf {
        debug_assert!(FILE_SUFFIXES.contains(&suffix));
        case_file(&self.dir, self.name, suffix)
    }

    /// The counter directory (--stats), `None` with --no-counters. For
    /// counters outside [`Field::ALL`], read by name.
    pub fn stats_dir(&self) -> Option<&Path> {
        self.stats.as_deref()
    }

    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Prints `# text` (through the runner).
    pub fn diag(&self, text: &str) {
        write_fd(self.out, tap::diag(text).as_bytes());
    }

    /// Records a failed check and says why.
    pub fn fail(&mut self, text: &str) {
        self.failed = true;
        self.diag(text);
    }

    pub fn check(&mut self, ok: bool, text: impl FnOnce() -> String) {
        if !ok {
            self.fail(&text());
        }
    }

    pub fn check_eq<T: PartialEq + std::fmt::Display>(&mut self, what: &str, expected: T, got: T) {
        if expected != got {
            self.fail(&format!("{what}: expected {expected}, got {got}"));
        }
    }

    /// Reads the counters; `None` with --no-counters.
    pub fn snap(&self) -> Result<Option<Counters>, String> {
        self.stats.as_deref().map(Counters::read).transpose()
    }

    /// Checks that the sum of `fields` moved by `expected` between two
    /// snapshots (nothing to check without counters).
    pub fn check_delta_sum(
        &mut self,
        step: &str,
        before: &Option<Counters>,
        after: &Option<Counters>,
        fields: &[Field],
        expected: i128,
    ) {
        if let (Some(b), Some(a)) = (before, after) {
            let got = counters::delta(b, a, fields);
            if let Some(msg) =
                counters::delta_mismatch(&counters::label(fields), expected, got, step)
            {
                self.fail(&msg);
            }
        }
    }

    pub fn check_delta(
        &mut self,
        step: &str,
        before: &Option<Counters>,
        after: &Option<Counters>,
        field: Field,
        expected: i128,
    ) {
        self.check_delta_sum(step, before, after, &[field], expected);
    }

    /// Checks the invariant on one snapshot.
    pub fn check_invariant(&mut self, c: &Option<Counters>) {
        if let Some(v) = c.as_ref().and_then(Counters::invariant_violation) {
            self.fail(&format!("counter invariant broken: {v}"));
        }
    }
}

fn write_fd(fd: libc::c_int, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n <= 0 {
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        buf = &buf[n as usize..];
    }
}

pub struct RunOpts {
    pub dir: PathBuf,
    pub stats: Option<PathBuf>,
    pub timeout: Duration,
}

/// Time limit of the stress case: its run time plus a margin, at least the
/// normal limit.
pub fn timeout_for(case: &Case, normal: Duration) -> Duration {
    if case.name == "truncate_race_stress" {
        normal.max(crate::stress::duration() + Duration::from_secs(60))
    } else {
        normal
    }
}

/// Runs `cases`, printing TAP; true if none failed. No plan line: the
/// output is spliced into the suite's stream (tests/run.sh numbers it).
pub fn run_all(cases: &[&Case], opts: &RunOpts) -> bool {
    let mut all_ok = true;
    for case in cases {
        let outcome = if case.needs_counters && opts.stats.is_none() {
            Outcome::Skip("needs counters (--no-counters)".into())
        } else {
            run_one(case, opts)
        };
        for suffix in FILE_SUFFIXES {
            if let Err(e) = sys::unlink(&case_file(&opts.dir, case.name, suffix)) {
                print!("{}", tap::diag(&format!("cleanup: {e}")));
            }
        }
        println!("{}", tap::test_line(case.name, &outcome));
        let _ = std::io::stdout().flush();
        all_ok &= outcome != Outcome::Fail;
    }
    all_ok
}

/// Forks, runs the case in the child, relays its diagnostics, and turns
/// its result, death or time-out into an outcome.
fn run_one(case: &Case, opts: &RunOpts) -> Outcome {
    let fail = |msg: String| {
        print!("{}", tap::diag(&msg));
        Outcome::Fail
    };
    for suffix in FILE_SUFFIXES {
        if let Err(e) = sys::unlink(&case_file(&opts.dir, case.name, suffix)) {
            return fail(format!("removing a stale file: {e}"));
        }
    }
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return fail(format!("pipe2: {}", std::io::Error::last_os_error()));
    }
    let (rd, wr) = (fds[0], fds[1]);
    let _ = std::io::stdout().flush();
    // SAFETY: the runner is single-threaded; the child runs the case and
    // leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return fail(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: the child's copy of the read end, unused by it.
        unsafe { libc::close(rd) };
        child(case, opts, wr);
    }
    // SAFETY: the parent's copy of the write end, so that EOF comes when the
    // child (and anything it forked) is gone.
    unsafe { libc::close(wr) };
    let timeout = timeout_for(case, opts.timeout);
    let (result, timed_out) = relay(rd, Instant::now() + timeout);
    // SAFETY: our read end, no longer used.
    unsafe { libc::close(rd) };
    if timed_out {
        // SAFETY: `pid` is our child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let end = match sys::wait_child(pid) {
        Ok(e) => e,
        Err(e) => return fail(e),
    };
    if timed_out {
        return fail(format!("timed out after {} s, killed", timeout.as_secs()));
    }
    match (result, end) {
        (Some(o), ChildEnd::Exited(0)) => o,
        (_, end) => fail(format!("case process {end} before reporting a result")),
    }
}

/// Prints the child's diagnostic lines as they come; returns its result
/// line, and whether the deadline passed first.
fn relay(rd: libc::c_int, deadline: Instant) -> (Option<Outcome>, bool) {
    let mut pending = Vec::new();
    let mut result = None;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (result, true);
        }
        let mut pfd = libc::pollfd {
            fd: rd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().clamp(1, 60_000) as libc::c_int;
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r <= 0 {
            continue; // time-out (rechecked above) or EINTR
        }
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::read(rd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n as usize]);
        while let Some(i) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            let line = String::from_utf8_lossy(&line[..i]).into_owned();
            match tap::decode_line(&line) {
                ChildLine::Result(o) => result = Some(o),
                ChildLine::Diag(d) => println!("{d}"),
            }
        }
        let _ = std::io::stdout().flush();
    }
    if !pending.is_empty() {
        println!(
            "{}",
            tap::diag(&String::from_utf8_lossy(&pending)).trim_end()
        );
    }
    (result, false)
}

/// The case's process: never returns.
fn child(case: &Case, opts: &RunOpts, out: libc::c_int) -> ! {
    sys::no_core_dumps();
    let mut ctx = Ctx {
        name: case.name,
        dir: opts.dir.clone(),
        stats: opts.stats.clone(),
        out,
        failed: false,
    };
    // Panic messages become diagnostics (threads of the stress case too).
    std::panic::set_hook(Box::new(move |info| {
        write_fd(out, tap::diag(&format!("panic: {info}")).as_bytes());
    }));
    let run = case.run;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&mut ctx)));
    let outcome = match r {
        Ok(Ok(())) if !ctx.failed => Outcome::Pass,
        Ok(Ok(())) => Outcome::Fail,
        Ok(Err(CaseError::Skip(why))) if !ctx.failed => Outcome::Skip(why),
        Ok(Err(CaseError::Skip(why))) => {
            ctx.diag(&format!("then skipped: {why}"));
            Outcome::Fail
        }
        Ok(Err(CaseError::Fail(msg))) => {
            ctx.diag(&msg);
            Outcome::Fail
        }
        Err(_) => {
            ctx.diag("the case panicked");
            Outcome::Fail
        }
    };
    write_fd(out, tap::encode_result(&outcome).as_bytes());
    // SAFETY: leaving the forked child without running the parent's exit
    // handlers or flushing its stdio buffers a second time.
    unsafe { libc::_exit(0) }
}

/// The counter directory of the ferrofs holding `dir`: the entry of
/// /sys/fs/ferrofs whose block device has `dir`'s device number, or the
/// only entry if there is just one.
pub fn find_stats_dir(dir: &Path) -> Option<PathBuf> {
    let root = Path::new("/sys/fs/ferrofs");
    let entries: Vec<PathBuf> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join(Field::EntriesMarked.name()).exists())
        .collect();
    if let Ok((maj, min)) = sys::dev_of(dir) {
        let want = format!("{maj}:{min}");
        for p in &entries {
            let name = p.file_name()?;
            let dev = Path::new("/sys/class/block").join(name).join("dev");
            if std::fs::read_to_string(dev).is_ok_and(|s| s.trim() == want) {
                return Some(p.clone());
            }
        }
    }
    if entries.len() == 1 {
        return entries.into_iter().next();
    }
    None
}
