#!/usr/bin/env bash
# `make check`: set up, build, run host tests, then the guest suite; print one
# summary line `N passed, N failed, N skipped` and exit non-zero on failure.
source "$(dirname "$0")/common.sh"
cd "$FERRO_ROOT"
start=$SECONDS
bash scripts/build.sh

passed=0 failed=0 skipped=0
failures=()
RESULTS=${FERRO_RESULTS:-$FERRO_ROOT/results/check}
mkdir -p "$RESULTS"

# 1. Host tests: the on-media format, mkfs and the tools.
log "host: cargo test (tools/)"
if (cd tools && cargo test --release 2>&1) | tee "$RESULTS/host.log" | grep -E '^test result|FAILED|panicked' ; then :; fi
while read -r p f i; do
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + i))
done < <(sed -nE 's/^test result: [a-zA-Z]+\. ([0-9]+) passed; ([0-9]+) failed; ([0-9]+) ignored.*/\1 \2 \3/p' "$RESULTS/host.log")
if grep -qE '^error(\[|:)' "$RESULTS/host.log"; then
  failed=$((failed + 1)); failures+=("host: cargo test did not build")
fi
grep -E '^test .* FAILED$' "$RESULTS/host.log" | while read -r _ name _; do failures+=("host: $name"); echo "  host: $name"; done || true

# 2. Guest suite.
count_tap() {  # $1: TAP file, $2: label
  local line
  while IFS= read -r line; do
    if [[ $line =~ ^not\ ok\ [0-9]+\ (.*)$ ]]; then
      failed=$((failed + 1)); failures+=("$2: ${BASH_REMATCH[1]}")
    elif [[ $line =~ ^ok\ [0-9]+\ .*\#\ SKIP ]]; then
      skipped=$((skipped + 1))
    elif [[ $line =~ ^ok\ [0-9]+\  ]]; then
      passed=$((passed + 1))
    fi
  done < "$1"
}
# Any of these in the guest kernel log fails the run.
BAD='BUG:|WARNING:|Oops|general protection fault|possible circular locking|possible recursive locking|inconsistent lock state|KASAN|UBSAN|sleeping function called from invalid context|Call Trace:|Kernel panic'
kernel_log_clean() {  # $1: label
  # The console (level <= 5, survives a panic) and the full dmesg saved by
  # the guest's init at the end.
  if cat "$FERRO_CACHE/out/console.log" "$FERRO_CACHE/out/dmesg.log" 2>/dev/null |
    grep -E "$BAD" > "$RESULTS/$1-kernel-bad.log"; then
    failed=$((failed + 1)); failures+=("$1: kernel log clean")
    log "$1: the kernel log has errors:"
    cat "$FERRO_CACHE/out/console.log" "$FERRO_CACHE/out/dmesg.log" 2>/dev/null | grep -E -A20 "$BAD" | head -n 60 >&2
  else
    passed=$((passed + 1))
  fi
}
guest_run() {  # $1: label, rest: command
  local label=$1 rc=0; shift
  log "guest: $label"
  bash scripts/vm.sh --timeout "${FERRO_GUEST_TIMEOUT:-1800}" -- "$@" | tee "$RESULTS/$label.tap" || rc=$?
  cp "$FERRO_CACHE/out/console.log" "$RESULTS/$label-console.log" 2>/dev/null || true
  cp "$FERRO_CACHE/out/dmesg.log" "$RESULTS/$label-dmesg.log" 2>/dev/null || true
  count_tap "$RESULTS/$label.tap" "$label"
  if [ "$rc" != 0 ]; then
    failed=$((failed + 1))
    case $rc in
      124) failures+=("$label: guest timed out and was killed") ;;
      125) failures+=("$label: guest died (panic/oops) before the suite finished") ;;
      *) failures+=("$label: guest suite exited $rc") ;;
    esac
  fi
  kernel_log_clean "$label"
}
# FERRO_TESTS=substring runs only the matching guest test files.
rm -rf "$FERRO_CACHE/out/persist" "$FERRO_CACHE/out/persist2"
# The knobs of the guest tests, passed through when set.
guest_env=()
for v in FERRO_FUZZ_ROUNDS FERRO_FUZZ_SEED FERROTEST_STRESS_SECS FERROTEST_SEED FERROTEST_COHERENCE_SECS \
  FERROTEST_ODIRECT_DEV; do
  if [ -n "${!v:-}" ]; then guest_env+=("$v=${!v}"); fi
done
guest_run suite env "${guest_env[@]}" bash tests/run.sh "${FERRO_TESTS:-}"

# 2b. Persistence-order checker, host half: crash states from the traces
# that tests/50-persist.sh recorded (the guest half): the one-thread
# workload, and two threads at once.
for P in "$FERRO_CACHE/out/persist" "$FERRO_CACHE/out/persist2"; do
  name=$(basename "$P")
  if [ -s "$P/trace.bin" ] && [ -s "$P/params" ]; then
    read -r pseed pops pthreads < "$P/params"
    pthreads=${pthreads:-1}
    log "host: ferrocrash over the traced workload (seed $pseed, $pthreads thread(s) of $pops operations)"
    rc=0
    tools/target/release/ferrocrash --image "$P/pre.img" --trace "$P/trace.bin" \
      --seed "$pseed" --ops "$pops" --threads "$pthreads" --save-dir "$RESULTS/crash-states-$name" \
      > "$RESULTS/$name.log" 2>&1 || rc=$?
    summary=$(grep -E '^ferrocrash:' "$RESULTS/$name.log" | tail -n 1)
    echo "  $summary"
    if [ "$rc" = 0 ] && [ -n "$summary" ]; then
      passed=$((passed + 1))
    else
      failed=$((failed + 1)); failures+=("$name: ferrocrash exit $rc: ${summary:-no summary} (see $RESULTS/$name.log)")
      tail -n 30 "$RESULTS/$name.log" >&2
    fi
  elif [ -z "${FERRO_TESTS:-}" ]; then
    failed=$((failed + 1)); failures+=("$name: the guest recorded no trace")
  fi
done
# Persistence across a reboot: the suite left files on pmem1; boot again on
# the same file-backed memory and check them.
# Only when tests/90-reboot-prepare.sh ran (all files, or FERRO_TESTS names it).
case " ${FERRO_TESTS:-90} " in
  *90*) guest_run reboot bash tests/reboot-verify.sh ;;
  *) skipped=$((skipped + 1)); echo "  reboot check: SKIP (FERRO_TESTS=$FERRO_TESTS does not run 90-reboot-prepare)" ;;
esac

# 3. Power cuts: SIGKILL QEMU mid-workload, reboot, recover, verify.
if [ -z "${FERRO_TESTS:-}" ] && [ "${CHECK_CRASH_ROUNDS:-2}" != 0 ]; then
  log "crash: ${CHECK_CRASH_ROUNDS:-2} power-cut rounds"
  CRASH_ROUNDS=${CHECK_CRASH_ROUNDS:-2} CRASH_RESULTS=$RESULTS/crash \
    bash scripts/crash-test.sh --no-build > "$RESULTS/crash.log" 2>&1 || true
  if [ -s "$RESULTS/crash/crash.tap" ]; then
    count_tap "$RESULTS/crash/crash.tap" crash
    grep -E '^(not )?ok' "$RESULTS/crash/crash.tap" | sed 's/^/  /'
  else
    failed=$((failed + 1)); failures+=("crash: the power-cut test produced no results")
  fi
fi

echo
if ((${#failures[@]})); then
  echo "Failed:"
  printf '  %s\n' "${failures[@]}"
fi
echo "make check took $((SECONDS - start)) s; results in $RESULTS"
echo "$passed passed, $failed failed, $skipped skipped"
((failed == 0))
