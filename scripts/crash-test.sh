#!/usr/bin/env bash
# `make crash-test`: power-cut test. Each round boots the guest on the same
# file-backed pmem, runs tests/crash-workload.sh, SIGKILLs QEMU at a random
# moment, boots again and checks every acknowledged operation, fsck and the
# kernel log (tests/crash-verify.sh). CRASH_ROUNDS sets the rounds (default
# 3); `make check` runs 2. Results as TAP in $CRASH_RESULTS/crash.tap.
#   --no-build   the caller built everything already
source "$(dirname "$0")/common.sh"
cd "$FERRO_ROOT"
[ "${1:-}" = --no-build ] || bash scripts/build.sh
rounds=${CRASH_ROUNDS:-3}
OUT=${FERRO_OUT:-$FERRO_CACHE/out}
RESULTS=${CRASH_RESULTS:-$FERRO_ROOT/results/crash}
BAD='BUG:|WARNING:|Oops|general protection fault|possible circular locking|possible recursive locking|inconsistent lock state|KASAN|UBSAN|sleeping function called from invalid context|Call Trace:|Kernel panic'
mkdir -p "$RESULTS"
: > "$RESULTS/acks.txt"
tap=$RESULTS/crash.tap
: > "$tap"
for r in $(seq 1 "$rounds"); do
  delay=$((RANDOM % 8 + 2))
  log "crash round $r: workload, SIGKILL ${delay}s after it starts"
  rc=0
  bash scripts/vm.sh --timeout 300 --kill-after "READY round $r" "$delay" -- bash tests/crash-workload.sh "$r" >/dev/null || rc=$?
  if [ "$rc" = 137 ]; then
    echo "ok - round $r: QEMU killed ${delay}s into the workload" >> "$tap"
  else
    echo "not ok - round $r: the workload ended with $rc before the kill" >> "$tap"
  fi
  if grep -E "$BAD" "$OUT/console.log" > "$RESULTS/workload-$r-kernel-bad.log" 2>/dev/null; then
    echo "not ok - round $r: kernel log clean during the workload" >> "$tap"
  else
    echo "ok - round $r: kernel log clean during the workload" >> "$tap"
  fi
  # A line cut by the kill (no newline yet) was never acknowledged.
  log_file=$OUT/output.log
  if [ -n "$(tail -c 1 "$log_file")" ]; then sed '$d' "$log_file"; else cat "$log_file"; fi |
    tr -d '\r' | grep -E '^(ACK|DEL|MV|MVSTART|RMSTART|XA|XARM|XARMSTART) ' >> "$RESULTS/acks.txt" || true
  log "crash round $r: $(grep -c '^ACK' "$log_file" || true) files acknowledged this round"
  cp "$RESULTS/acks.txt" "$OUT/acks.txt"
  rc=0
  bash scripts/vm.sh --timeout 600 -- bash tests/crash-verify.sh > "$RESULTS/verify-$r.tap" || rc=$?
  sed -E "s/^(ok|not ok) - /\1 - round $r: /" "$RESULTS/verify-$r.tap" >> "$tap"
  [ "$rc" = 0 ] || echo "not ok - round $r: verification guest exited $rc" >> "$tap"
  cp "$OUT/console.log" "$RESULTS/verify-$r-console.log" 2>/dev/null || true
  if cat "$OUT/console.log" "$OUT/dmesg.log" 2>/dev/null | grep -E "$BAD" > "$RESULTS/verify-$r-kernel-bad.log"; then
    echo "not ok - round $r: kernel log clean after recovery" >> "$tap"
  else
    echo "ok - round $r: kernel log clean after recovery" >> "$tap"
  fi
done
cat "$tap"
passed=$(grep -cE '^ok' "$tap" || true)
failed=$(grep -cE '^not ok' "$tap" || true)
echo "$passed passed, $failed failed"
((failed == 0))
