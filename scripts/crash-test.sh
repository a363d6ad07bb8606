#!/usr/bin/env bash
# `make crash-test`: power-cut test. Each round boots the guest on the same
# file-backed pmem, runs tests/crash-workload.sh, SIGKILLs QEMU at a random
# moment, boots again and checks every acknowledged fsync
# (tests/crash-verify.sh). CRASH_ROUNDS sets the rounds (default 3).
source "$(dirname "$0")/common.sh"
cd "$FERRO_ROOT"
bash scripts/build.sh
rounds=${CRASH_ROUNDS:-3}
OUT=$FERRO_CACHE/out
RESULTS=$FERRO_ROOT/results/crash
mkdir -p "$RESULTS"
: > "$RESULTS/acks.txt"
passed=0 failed=0
for r in $(seq 1 "$rounds"); do
  delay=$((RANDOM % 8 + 2))
  log "round $r: workload, SIGKILL ${delay}s after it starts"
  rc=0
  bash scripts/vm.sh --timeout 300 --kill-after "READY round $r" "$delay" -- bash tests/crash-workload.sh "$r" >/dev/null || rc=$?
  [ "$rc" = 137 ] || { log "round $r: the workload ended with $rc before the kill"; failed=$((failed + 1)); }
  tr -d '\r' < "$OUT/output.log" | grep -E '^(ACK|DEL) ' >> "$RESULTS/acks.txt" || true
  log "round $r: $(grep -c '^ACK' "$OUT/output.log") files acknowledged this round"
  cp "$RESULTS/acks.txt" "$OUT/acks.txt"
  bash scripts/vm.sh --timeout 600 -- bash tests/crash-verify.sh | tee "$RESULTS/verify-$r.tap"
  passed=$((passed + $(grep -cE '^ok' "$RESULTS/verify-$r.tap" || true)))
  failed=$((failed + $(grep -cE '^not ok' "$RESULTS/verify-$r.tap" || true)))
done
echo "$passed passed, $failed failed"
((failed == 0))
